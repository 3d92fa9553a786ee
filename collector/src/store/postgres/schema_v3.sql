-- Cordon cluster store, schema version 3: the console's searches by service port, newest
-- first, and its summaries counted from the time index alone (it holds the
-- host and the verdict too). See the SQLite schema version 10.
CREATE INDEX flows_service_port ON flows((CASE WHEN direction = 'inbound' THEN local_port ELSE remote_port END), last_seen_ns);
-- The protocol, for a search of one that few flows use (ICMP): a handful of values, each
-- appended to in time order, so cheap to keep.
CREATE INDEX flows_proto ON flows(proto, last_seen_ns);
DROP INDEX flows_time;
CREATE INDEX flows_time ON flows(last_seen_ns, host_id, policy_verdict);
-- Flows per minute and per hour, host and verdict, kept at ingest (see the SQLite schema
-- version 10). Keyed by host, so the cluster's workers (one host's batches on one worker at
-- a time) never wait on each other's rows.
CREATE TABLE flow_minutes (
    period  BIGINT NOT NULL,
    host_id BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    verdict TEXT COLLATE "C" NOT NULL,
    flows   BIGINT NOT NULL,
    PRIMARY KEY (period, host_id, verdict)
);
CREATE TABLE flow_hours (
    period  BIGINT NOT NULL,
    host_id BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    verdict TEXT COLLATE "C" NOT NULL,
    flows   BIGINT NOT NULL,
    PRIMARY KEY (period, host_id, verdict)
);
INSERT INTO flow_minutes (period, host_id, verdict, flows)
    SELECT last_seen_ns / 60000000000, host_id, coalesce(policy_verdict, ''), count(*)
    FROM flows GROUP BY 1, 2, 3;
INSERT INTO flow_hours (period, host_id, verdict, flows)
    SELECT last_seen_ns / 3600000000000, host_id, coalesce(policy_verdict, ''), count(*)
    FROM flows GROUP BY 1, 2, 3;
