-- Cordon collector store, schema version 10: the console's searches by port and its
-- summaries. A port search matches the flow's service port (remote for outbound flows,
-- local for inbound), read newest first from its own index, where before a search for a
-- port no flow used read every row (14 s on 10 million flows). One index on the service
-- port: an index on each side (two, one of them on ephemeral ports, inserted all over)
-- halved the collector's ingest (150k to 71k records/s), this one costs little (its
-- entries are appended per port, in time order). The time index also holds the host and the verdict, so
-- a window's chart (flows per interval and verdict) and its busiest hosts are counted from
-- the index alone, without reading the rows (the same number of indexes at ingest as the
-- plain time index, each entry a little wider). Rebuilding it takes a while on a large
-- store, once, at the upgrade.
CREATE INDEX flows_service_port ON flows((CASE WHEN direction = 'inbound' THEN local_port ELSE remote_port END), last_seen_ns);
-- The protocol, for a search of one that few flows use (ICMP): a handful of values, each
-- appended to in time order, so cheap to keep.
CREATE INDEX flows_proto ON flows(proto, last_seen_ns);
DROP INDEX flows_time;
CREATE INDEX flows_time ON flows(last_seen_ns, host_id, policy_verdict);
-- Flows per minute and per hour, host and verdict ('' where no policy was published),
-- kept at ingest (one upsert per period and verdict a batch touches, a batch being one
-- host's): a summary that filters on nothing but host and time reads these instead of the
-- flows, to the minute (windows under 12 hours) or the hour. Filled from the stored flows
-- at the upgrade.
CREATE TABLE flow_minutes (
    period  INTEGER NOT NULL,                 -- last_seen_ns / 60 s
    host_id INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    verdict TEXT NOT NULL,
    flows   INTEGER NOT NULL,
    PRIMARY KEY (period, host_id, verdict)
) WITHOUT ROWID;
CREATE TABLE flow_hours (
    period  INTEGER NOT NULL,                 -- last_seen_ns / 3600 s
    host_id INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    verdict TEXT NOT NULL,
    flows   INTEGER NOT NULL,
    PRIMARY KEY (period, host_id, verdict)
) WITHOUT ROWID;
INSERT INTO flow_minutes (period, host_id, verdict, flows)
    SELECT last_seen_ns / 60000000000, host_id, coalesce(policy_verdict, ''), count(*)
    FROM flows GROUP BY 1, 2, 3;
INSERT INTO flow_hours (period, host_id, verdict, flows)
    SELECT last_seen_ns / 3600000000000, host_id, coalesce(policy_verdict, ''), count(*)
    FROM flows GROUP BY 1, 2, 3;
