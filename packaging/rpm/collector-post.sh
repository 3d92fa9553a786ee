# cordon-collector %post ($1: 1 = install, 2 or more = upgrade). Written for systemd.
install -d -m 0700 -o cordon -g cordon /var/lib/cordon-collector
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable cordon-collector.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl start cordon-collector.service >/dev/null 2>&1 || :
    fi
fi
