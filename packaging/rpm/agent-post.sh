# cordon-agent %post ($1: 1 = install, 2 or more = upgrade). Written for systemd.
install -d -m 0700 -o root -g root /var/lib/cordon
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable cordon-agent.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        if [ -e /var/lib/cordon/agent.pem ]; then
            systemctl start cordon-agent.service >/dev/null 2>&1 || :
        else
            echo "cordon-agent: not enrolled yet. Set uplink.collectors in /etc/cordon/agent.toml,"
            echo "  run 'cordon-agent enroll --config /etc/cordon/agent.toml ...', then"
            echo "  'systemctl start cordon-agent'."
        fi
    fi
fi
