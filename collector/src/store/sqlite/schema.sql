-- Cordon collector store, schema version 1. Times are Unix ns unless named *_s.
CREATE TABLE hosts (
    id            INTEGER PRIMARY KEY,
    agent_id      TEXT NOT NULL UNIQUE,   -- the CN of the agent's certificate
    host_name     TEXT NOT NULL,
    agent_version TEXT NOT NULL DEFAULT '',
    capture       TEXT NOT NULL DEFAULT '',
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL DEFAULT 0, -- highest flow batch durably stored
    revoked       INTEGER NOT NULL DEFAULT 0  -- 1: the agent's certificate is refused
);

CREATE TABLE inventory (
    host_id     INTEGER PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
    updated_ns  INTEGER NOT NULL,
    body        BLOB NOT NULL                 -- the agent's Inventory message, postcard
);

CREATE TABLE flows (
    id            INTEGER PRIMARY KEY,
    host_id       INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    event         TEXT NOT NULL,              -- start | update | end
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL,
    proto         TEXT NOT NULL,
    direction     TEXT NOT NULL,
    local_ip      TEXT NOT NULL,
    local_port    INTEGER NOT NULL,
    remote_ip     TEXT NOT NULL,
    remote_port   INTEGER NOT NULL,
    bytes_out     INTEGER NOT NULL,
    bytes_in      INTEGER NOT NULL,
    packets_out   INTEGER NOT NULL,
    packets_in    INTEGER NOT NULL,
    closed        INTEGER NOT NULL,
    verdict       TEXT NOT NULL,
    pid           INTEGER,
    uid           INTEGER,
    user_name     TEXT,
    comm          TEXT,
    exe           TEXT,
    cmdline       TEXT,
    cgroup        TEXT,
    unattributed_reason TEXT
);
CREATE INDEX flows_time   ON flows(last_seen_ns);
CREATE INDEX flows_host   ON flows(host_id, last_seen_ns);
CREATE INDEX flows_remote ON flows(remote_ip, remote_port);

-- Conversations: one edge per (host, direction, proto, remote, service port, process),
-- counted from start records; what policy learning reads.
CREATE TABLE conversations (
    host_id       INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    direction     TEXT NOT NULL,
    proto         TEXT NOT NULL,
    remote_ip     TEXT NOT NULL,
    port          INTEGER NOT NULL,           -- the service port (remote if outbound, local if inbound)
    exe           TEXT NOT NULL DEFAULT '',
    flows         INTEGER NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL,
    PRIMARY KEY (host_id, direction, proto, remote_ip, port, exe)
);
