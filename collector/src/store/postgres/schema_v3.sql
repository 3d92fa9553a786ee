-- Cordon cluster store, schema version 3: the console's searches by port, newest first,
-- one index per side, and its summaries counted from the time index alone (it holds the
-- host and the verdict too). See the SQLite schema version 10.
CREATE INDEX flows_remote_port ON flows(remote_port, last_seen_ns);
CREATE INDEX flows_local_port ON flows(local_port, last_seen_ns);
DROP INDEX flows_time;
CREATE INDEX flows_time ON flows(last_seen_ns, host_id, policy_verdict);
