-- Cordon collector store, schema version 5: playbook runs, their steps, and approvals.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    playbook    TEXT NOT NULL,
    alert_key   TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    host_name   TEXT NOT NULL,
    facts       TEXT NOT NULL,                -- the alert facts (JSON)
    context     TEXT NOT NULL,                -- what steps produced: incident, outcome, ... (JSON)
    state       TEXT NOT NULL,                -- running | waiting | done | failed
    step        TEXT,                         -- current step id; NULL when finished
    phase       INTEGER NOT NULL DEFAULT 0,   -- 0: not started, 1: started (external work in flight)
    attempts    INTEGER NOT NULL DEFAULT 0,   -- retries of the current step
    wake_ns     INTEGER NOT NULL DEFAULT 0,   -- not before (waits, deadlines, backoff)
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    error       TEXT
);
-- One unfinished run per playbook and alert key: a republished alert does not start another.
CREATE UNIQUE INDEX runs_active ON runs(playbook, alert_key) WHERE state IN ('running', 'waiting');
CREATE INDEX runs_open ON runs(wake_ns) WHERE state IN ('running', 'waiting');

CREATE TABLE run_steps (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,                -- done | failed | retry
    started_ns  INTEGER NOT NULL,
    finished_ns INTEGER NOT NULL,
    detail      TEXT NOT NULL                 -- JSON
);
CREATE INDEX run_steps_run ON run_steps(run_id, id);

CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    via         TEXT NOT NULL,                -- duo | link | console
    username    TEXT NOT NULL,
    state       TEXT NOT NULL,                -- pending | approved | denied | timed_out
    question    TEXT NOT NULL,
    requested_ns INTEGER NOT NULL,
    deadline_ns INTEGER NOT NULL,
    decided_ns  INTEGER,
    decided_by  TEXT,
    duo_txid    TEXT,
    link_hash   TEXT                          -- SHA-256 of the one-time link token
);
CREATE UNIQUE INDEX approvals_step ON approvals(run_id, step);
CREATE INDEX approvals_pending ON approvals(state) WHERE state = 'pending';
