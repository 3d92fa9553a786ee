-- Cordon collector store, schema version 9: the console's flow searches. By executable
-- and by remote address, newest first, as the flow screen asks: without an index a search
-- for an executable that is rare (or absent) read every row (13-17 s on 10 million). The
-- old remote index (address, port) never served the newest-first order.
DROP INDEX IF EXISTS flows_remote;
CREATE INDEX flows_remote ON flows(remote_ip, last_seen_ns);
CREATE INDEX flows_exe ON flows(exe, last_seen_ns);
