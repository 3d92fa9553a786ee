-- Cordon collector store, schema version 7: coordination, as a cluster needs it and a
-- single collector uses too. Leases give a named job (an output's delivery, the playbook
-- engine's intake, retention) to one holder at a time; node heartbeats; the node each
-- agent is connected to; claims of playbook runs by the engine working on them.
CREATE TABLE leases (
    name     TEXT PRIMARY KEY,
    owner    TEXT NOT NULL,
    until_ns INTEGER NOT NULL
);

CREATE TABLE nodes (
    name         TEXT PRIMARY KEY,
    agent_addr   TEXT NOT NULL,
    api_addr     TEXT NOT NULL,
    version      TEXT NOT NULL,
    started_ns   INTEGER NOT NULL,
    heartbeat_ns INTEGER NOT NULL,
    stats        TEXT NOT NULL DEFAULT '{}'   -- JSON
);

ALTER TABLE hosts ADD COLUMN node TEXT;
ALTER TABLE hosts ADD COLUMN connected_ns INTEGER;

ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until_ns INTEGER NOT NULL DEFAULT 0;
