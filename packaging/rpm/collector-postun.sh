# cordon-collector %postun ($1: 0 = erase, 1 or more = upgrade): restart after an upgrade.
# RPM has no purge: on erase /var/lib/cordon-collector (CA, database) and the `cordon`
# user stay; remove them by hand if the data is no longer wanted.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart cordon-collector.service >/dev/null 2>&1 || :
    fi
fi
