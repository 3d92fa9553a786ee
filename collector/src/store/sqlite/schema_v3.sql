-- Cordon collector store, schema version 3: policy versions, host labels, compliance
-- verdicts on flows, alerts and the alert outbox of the output sinks.
ALTER TABLE flows ADD COLUMN policy_verdict TEXT;   -- permitted | escaped | rejected; NULL: no policy
ALTER TABLE flows ADD COLUMN policy_rule TEXT;
ALTER TABLE flows ADD COLUMN policy_version INTEGER;
-- Violations are few: a partial index keeps `--verdict escaped` fast and inserts cheap.
CREATE INDEX flows_violations ON flows(policy_verdict, last_seen_ns)
    WHERE policy_verdict IN ('escaped', 'rejected');

CREATE TABLE host_labels (
    host_id INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (host_id, key)
);

CREATE TABLE policies (
    version      INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    body         TEXT NOT NULL,               -- the YAML as applied
    state        TEXT NOT NULL,               -- draft | published | retired
    created_ns   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    published_ns INTEGER,
    published_by TEXT
);

CREATE TABLE alerts (
    key_id           TEXT PRIMARY KEY,        -- host, process, remote, port, rule
    severity         TEXT NOT NULL,
    host_id          INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    rule             TEXT NOT NULL,
    policy_version   INTEGER NOT NULL,
    first_ns         INTEGER NOT NULL,
    last_ns          INTEGER NOT NULL,
    count            INTEGER NOT NULL,
    alert            TEXT NOT NULL,           -- the latest alert JSON
    published_ns     INTEGER,                 -- last time it went to the outbox
    snoozed_until_ns INTEGER NOT NULL DEFAULT 0,
    muted            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alerts_last ON alerts(last_ns);

-- What the output sinks have to deliver, in order; each sink keeps its position.
CREATE TABLE alert_outbox (
    id         INTEGER PRIMARY KEY,
    key_id     TEXT NOT NULL,
    envelope   TEXT NOT NULL,                 -- the HEC envelope JSON
    created_ns INTEGER NOT NULL
);
CREATE TABLE sink_progress (
    sink          TEXT PRIMARY KEY,
    delivered_id  INTEGER NOT NULL,
    dead_lettered INTEGER NOT NULL DEFAULT 0
);
