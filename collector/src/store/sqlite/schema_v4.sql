-- Cordon collector store, schema version 4: commands to agents (isolate, release), each
-- host's enforcement state as its agent reports it, and the audit log.
CREATE TABLE commands (
    id          INTEGER PRIMARY KEY,          -- the command id the agent sees (idempotent)
    host_id     INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,                -- isolate | release
    body        TEXT NOT NULL,                -- the command as JSON (reason, expiry, allow)
    created_ns  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    state       TEXT NOT NULL,                -- pending | sent | done | failed
    sent_ns     INTEGER,
    done_ns     INTEGER,
    result      TEXT
);
CREATE INDEX commands_pending ON commands(host_id, id) WHERE state IN ('pending', 'sent');

ALTER TABLE hosts ADD COLUMN isolated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN isolated_since_ns INTEGER;
ALTER TABLE hosts ADD COLUMN isolated_by TEXT;
ALTER TABLE hosts ADD COLUMN isolation_reason TEXT;
ALTER TABLE hosts ADD COLUMN isolation_expires_ns INTEGER;
ALTER TABLE hosts ADD COLUMN enforcement_backend TEXT;

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    ts_ns  INTEGER NOT NULL,
    actor  TEXT NOT NULL,                     -- an API token's name, an agent id, "collector"
    action TEXT NOT NULL,                     -- e.g. isolate.requested, isolate.done
    target TEXT NOT NULL,                     -- usually an agent id
    detail TEXT NOT NULL                      -- JSON
);
CREATE INDEX audit_ts ON audit(ts_ns);
