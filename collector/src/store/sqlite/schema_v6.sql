-- Cordon collector store, schema version 6: policy learning. What a learning run found
-- (clusters, confidences, per-rule statistics and flags) is kept next to the draft it
-- created; approvals of a version's groups and rules by name are what later learning runs
-- must not rewrite.
CREATE TABLE policy_learning (
    version     INTEGER PRIMARY KEY REFERENCES policies(version) ON DELETE CASCADE,
    since_ns    INTEGER NOT NULL,
    until_ns    INTEGER NOT NULL,
    created_ns  INTEGER NOT NULL,
    report      TEXT NOT NULL                 -- the learning report (JSON)
);

CREATE TABLE policy_approvals (
    version     INTEGER NOT NULL REFERENCES policies(version) ON DELETE CASCADE,
    kind        TEXT NOT NULL,                -- group | rule
    name        TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_ns INTEGER NOT NULL,
    PRIMARY KEY (version, kind, name)
);
