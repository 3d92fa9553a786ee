-- Cordon collector store, schema version 8: outbox ids never go back. An INTEGER PRIMARY
-- KEY takes max(id) + 1, so once every sink had delivered everything and the outbox was
-- pruned empty, the next envelope got id 1, below every sink's position, and no sink
-- delivered it (nor the ones after it, until the ids caught up). AUTOINCREMENT never
-- hands out an id again; it starts above every sink's position.
CREATE TABLE alert_outbox_v8 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id     TEXT NOT NULL,
    envelope   TEXT NOT NULL,                 -- the HEC envelope JSON
    created_ns INTEGER NOT NULL
);
INSERT INTO alert_outbox_v8 (id, key_id, envelope, created_ns)
    SELECT id, key_id, envelope, created_ns FROM alert_outbox;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'alert_outbox_v8', 0
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'alert_outbox_v8');
UPDATE sqlite_sequence
    SET seq = max(seq, (SELECT coalesce(max(delivered_id), 0) FROM sink_progress))
    WHERE name = 'alert_outbox_v8';
DROP TABLE alert_outbox;
ALTER TABLE alert_outbox_v8 RENAME TO alert_outbox;
