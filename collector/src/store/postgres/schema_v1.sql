-- Cordon collector store on PostgreSQL, schema version 1: SQLite's versions 1 to 7 in one
-- step, in PostgreSQL's dialect, plus what only a cluster needs (Kafka consumer offsets
-- and the collector CA shared by all nodes). Times are Unix ns (BIGINT) unless named *_s;
-- JSON is kept as TEXT, as the SQLite backend keeps it. Text that is sorted or compared
-- by key uses the "C" collation, so it sorts byte-wise like SQLite's BINARY, whatever
-- the database's locale.

CREATE TABLE hosts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id      TEXT COLLATE "C" NOT NULL UNIQUE,  -- the CN of the agent's certificate
    host_name     TEXT COLLATE "C" NOT NULL,
    agent_version TEXT NOT NULL DEFAULT '',
    capture       TEXT NOT NULL DEFAULT '',
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns  BIGINT NOT NULL,
    last_seq      BIGINT NOT NULL DEFAULT 0,         -- highest flow batch durably stored
    revoked       BOOLEAN NOT NULL DEFAULT false,    -- the agent's certificate is refused
    -- Enforcement state, as the agent reports it.
    isolated             BOOLEAN NOT NULL DEFAULT false,
    isolated_since_ns    BIGINT,
    isolated_by          TEXT,
    isolation_reason     TEXT,
    isolation_expires_ns BIGINT,
    enforcement_backend  TEXT,
    -- The collector node the agent is connected to.
    node          TEXT COLLATE "C",
    connected_ns  BIGINT
);

CREATE TABLE inventory (
    host_id     BIGINT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
    updated_ns  BIGINT NOT NULL,
    body        BYTEA NOT NULL                -- the agent's Inventory message, postcard
);

-- Unlike SQLite's, flows.host_id has no FOREIGN KEY: PostgreSQL checks one per row with
-- a query, a quarter of the binary COPY's time. Flows are only written by the group
-- commit, for host rows it holds locked (FOR UPDATE), and hosts are never deleted.
-- Flow ids are only a tie-break: each session takes them 1,000 at a time.
CREATE TABLE flows (
    id            BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1000) PRIMARY KEY,
    host_id       BIGINT NOT NULL,
    event         TEXT NOT NULL,              -- start | update | end
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns  BIGINT NOT NULL,
    proto         TEXT NOT NULL,
    direction     TEXT NOT NULL,
    local_ip      TEXT NOT NULL,
    local_port    INTEGER NOT NULL,
    remote_ip     TEXT NOT NULL,
    remote_port   INTEGER NOT NULL,
    bytes_out     BIGINT NOT NULL,
    bytes_in      BIGINT NOT NULL,
    packets_out   BIGINT NOT NULL,
    packets_in    BIGINT NOT NULL,
    closed        BOOLEAN NOT NULL,
    verdict       TEXT NOT NULL,
    pid           BIGINT,
    uid           BIGINT,
    user_name     TEXT,
    comm          TEXT,
    exe           TEXT,
    cmdline       TEXT,
    cgroup        TEXT,
    unattributed_reason TEXT,
    policy_verdict TEXT,                      -- permitted | escaped | rejected; NULL: no policy
    policy_rule    TEXT,
    policy_version BIGINT
);
CREATE INDEX flows_time ON flows(last_seen_ns);
CREATE INDEX flows_host ON flows(host_id, last_seen_ns);
-- Violations are few: a partial index keeps `--verdict escaped` fast and inserts cheap.
CREATE INDEX flows_violations ON flows(policy_verdict, last_seen_ns)
    WHERE policy_verdict IN ('escaped', 'rejected');

-- Conversations: one edge per (host, direction, proto, remote, service port, process),
-- counted from start records; what policy learning reads. Every group commit updates
-- its edges' counts (columns no index covers): with room left on each page the updates
-- stay on the page (HOT) instead of adding index entries, which halves their cost.
CREATE TABLE conversations (
    host_id       BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    direction     TEXT COLLATE "C" NOT NULL,
    proto         TEXT COLLATE "C" NOT NULL,
    remote_ip     TEXT COLLATE "C" NOT NULL,
    port          INTEGER NOT NULL,           -- remote if outbound, local if inbound
    exe           TEXT COLLATE "C" NOT NULL DEFAULT '',
    flows         BIGINT NOT NULL,
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns  BIGINT NOT NULL,
    PRIMARY KEY (host_id, direction, proto, remote_ip, port, exe)
) WITH (fillfactor = 50);
CREATE INDEX conversations_remote ON conversations(remote_ip, port);

CREATE TABLE tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,               -- read | admin | enroll
    hash         TEXT NOT NULL UNIQUE,        -- SHA-256 of the secret, hex
    created_ns   BIGINT NOT NULL,
    expires_ns   BIGINT,                      -- NULL: never
    uses_left    BIGINT,                      -- enroll tokens: enrollments left (NULL: unlimited)
    last_used_ns BIGINT,
    revoked      BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE enrollments (
    agent_id         TEXT PRIMARY KEY,        -- the CN of the certificate issued
    host_name        TEXT NOT NULL,
    token_id         BIGINT REFERENCES tokens(id),
    cert_fingerprint TEXT NOT NULL,
    enrolled_ns      BIGINT NOT NULL
);

CREATE TABLE host_labels (
    host_id BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    key     TEXT COLLATE "C" NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (host_id, key)
);

CREATE TABLE policies (
    version      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL,
    body         TEXT NOT NULL,               -- the YAML as applied
    state        TEXT NOT NULL,               -- draft | published | retired
    created_ns   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    published_ns BIGINT,
    published_by TEXT
);
-- At most one published version, whichever node publishes (SQLite has one writer).
CREATE UNIQUE INDEX policies_published ON policies((true)) WHERE state = 'published';

CREATE TABLE alerts (
    key_id           TEXT COLLATE "C" PRIMARY KEY, -- host, process, remote, port, rule
    severity         TEXT NOT NULL,
    host_id          BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    rule             TEXT NOT NULL,
    policy_version   BIGINT NOT NULL,
    first_ns         BIGINT NOT NULL,
    last_ns          BIGINT NOT NULL,
    count            BIGINT NOT NULL,
    alert            TEXT NOT NULL,           -- the latest alert JSON
    published_ns     BIGINT,                  -- last time it went to the outbox
    snoozed_until_ns BIGINT NOT NULL DEFAULT 0,
    muted            BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX alerts_last ON alerts(last_ns);

-- What the output sinks have to deliver, in order; each sink keeps its position. Ids come
-- from a sequence, so they never go back, also after the outbox was pruned empty; writers
-- hold an advisory lock from their first outbox row to their commit, so ids also become
-- visible in order (store/postgres/alerts.rs).
CREATE TABLE alert_outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id     TEXT NOT NULL,
    envelope   TEXT NOT NULL,                 -- the HEC envelope JSON
    created_ns BIGINT NOT NULL
);
CREATE TABLE sink_progress (
    sink          TEXT PRIMARY KEY,
    delivered_id  BIGINT NOT NULL,
    dead_lettered BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE commands (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- the id the agent sees
    host_id     BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,                -- isolate | release
    body        TEXT NOT NULL,                -- the command as JSON (reason, expiry, allow)
    created_ns  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    state       TEXT NOT NULL,                -- pending | sent | done | failed
    sent_ns     BIGINT,
    done_ns     BIGINT,
    result      TEXT
);
CREATE INDEX commands_pending ON commands(host_id, id) WHERE state IN ('pending', 'sent');

CREATE TABLE audit (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts_ns  BIGINT NOT NULL,
    actor  TEXT NOT NULL,                     -- an API token's name, an agent id, "collector"
    action TEXT NOT NULL,                     -- e.g. isolate.requested, isolate.done
    target TEXT NOT NULL,                     -- usually an agent id
    detail TEXT NOT NULL                      -- JSON
);
CREATE INDEX audit_ts ON audit(ts_ns);

CREATE TABLE runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    playbook    TEXT NOT NULL,
    alert_key   TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    host_name   TEXT NOT NULL,
    facts       TEXT NOT NULL,                -- the alert facts (JSON)
    context     TEXT NOT NULL,                -- what steps produced (JSON)
    state       TEXT NOT NULL,                -- running | waiting | done | failed
    step        TEXT,                         -- current step id; NULL when finished
    phase       BIGINT NOT NULL DEFAULT 0,    -- 0: not started, 1: external work in flight
    attempts    BIGINT NOT NULL DEFAULT 0,    -- retries of the current step
    wake_ns     BIGINT NOT NULL DEFAULT 0,    -- not before (waits, deadlines, backoff)
    created_ns  BIGINT NOT NULL,
    updated_ns  BIGINT NOT NULL,
    error       TEXT,
    owner       TEXT,                         -- the engine that claimed it
    lease_until_ns BIGINT NOT NULL DEFAULT 0  -- its claim lasts until then
);
-- One unfinished run per playbook and alert key: a republished alert does not start another.
CREATE UNIQUE INDEX runs_active ON runs(playbook, alert_key) WHERE state IN ('running', 'waiting');
CREATE INDEX runs_open ON runs(wake_ns) WHERE state IN ('running', 'waiting');

CREATE TABLE run_steps (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,                -- done | failed | retry
    started_ns  BIGINT NOT NULL,
    finished_ns BIGINT NOT NULL,
    detail      TEXT NOT NULL                 -- JSON
);
CREATE INDEX run_steps_run ON run_steps(run_id, id);

CREATE TABLE approvals (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step         TEXT NOT NULL,
    via          TEXT NOT NULL,               -- duo | link | console
    username     TEXT NOT NULL,
    state        TEXT NOT NULL,               -- pending | approved | denied | timed_out
    question     TEXT NOT NULL,
    requested_ns BIGINT NOT NULL,
    deadline_ns  BIGINT NOT NULL,
    decided_ns   BIGINT,
    decided_by   TEXT,
    duo_txid     TEXT,
    link_hash    TEXT                         -- SHA-256 of the one-time link token
);
CREATE UNIQUE INDEX approvals_step ON approvals(run_id, step);
CREATE INDEX approvals_pending ON approvals(state) WHERE state = 'pending';

-- Policy learning: what a learning run found, next to the draft it created; approvals of
-- a version's groups and rules by name, which later learning runs must not rewrite.
CREATE TABLE policy_learning (
    version     BIGINT PRIMARY KEY REFERENCES policies(version) ON DELETE CASCADE,
    since_ns    BIGINT NOT NULL,
    until_ns    BIGINT NOT NULL,
    created_ns  BIGINT NOT NULL,
    report      TEXT NOT NULL                 -- the learning report (JSON)
);

CREATE TABLE policy_approvals (
    version     BIGINT NOT NULL REFERENCES policies(version) ON DELETE CASCADE,
    kind        TEXT COLLATE "C" NOT NULL,    -- group | rule
    name        TEXT COLLATE "C" NOT NULL,
    approved_by TEXT NOT NULL,
    approved_ns BIGINT NOT NULL,
    PRIMARY KEY (version, kind, name)
);

-- Coordination: leases give a named job to one node at a time; node heartbeats.
CREATE TABLE leases (
    name     TEXT PRIMARY KEY,
    owner    TEXT NOT NULL,
    until_ns BIGINT NOT NULL
);

CREATE TABLE nodes (
    name         TEXT COLLATE "C" PRIMARY KEY,
    agent_addr   TEXT NOT NULL,
    api_addr     TEXT NOT NULL,
    version      TEXT NOT NULL,
    started_ns   BIGINT NOT NULL,
    heartbeat_ns BIGINT NOT NULL,
    stats        TEXT NOT NULL DEFAULT '{}'   -- JSON
);

-- Cluster only. Where each Kafka consumer group is in each partition of a topic: the next
-- offset to read, committed in the same transaction as the batches read up to it.
CREATE TABLE consumer_offsets (
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    next_offset    BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Cluster only. The collector CA every node issues agent certificates with (one row).
CREATE TABLE collector_ca (
    id         BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    cert_pem   TEXT NOT NULL,
    key_pem    TEXT NOT NULL,
    created_ns BIGINT NOT NULL
);
