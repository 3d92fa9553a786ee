-- Cordon cluster store, schema version 2: the console's flow searches by executable and by
-- remote address, newest first (see the SQLite schema version 9).
CREATE INDEX flows_remote ON flows(remote_ip, last_seen_ns);
CREATE INDEX flows_exe ON flows(exe, last_seen_ns);
