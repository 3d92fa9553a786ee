# cordon-agent %postun ($1: 0 = erase, 1 or more = upgrade). On upgrade the new agent is
# restarted (it re-applies any isolation from its state file). RPM has no purge: on erase
# /var/lib/cordon (keys, spool, enforcer state) and a modified agent.toml (.rpmsave) stay.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart cordon-agent.service >/dev/null 2>&1 || :
    fi
fi
