-- Cordon collector store, schema version 2: API and join tokens, and enrollments.
CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    scope       TEXT NOT NULL,            -- read | admin | enroll
    hash        TEXT NOT NULL UNIQUE,     -- SHA-256 of the secret, hex; the secret is not kept
    created_ns  INTEGER NOT NULL,
    expires_ns  INTEGER,                  -- NULL: never
    uses_left   INTEGER,                  -- enroll tokens: enrollments left (NULL: unlimited)
    last_used_ns INTEGER,
    revoked     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE enrollments (
    agent_id         TEXT PRIMARY KEY,    -- the CN of the certificate issued
    host_name        TEXT NOT NULL,
    token_id         INTEGER REFERENCES tokens(id),
    cert_fingerprint TEXT NOT NULL,
    enrolled_ns      INTEGER NOT NULL
);

-- Inserting into an index on the remote address (text, arriving in random order) cost
-- more than a third of ingest's time. Queries by remote address scan flows newest first
-- (flows_time) and stop at their limit; "who talked to X" over a whole window is answered
-- from conversations, which changes rarely (an upsert of an existing edge).
DROP INDEX flows_remote;
CREATE INDEX conversations_remote ON conversations(remote_ip, port);
