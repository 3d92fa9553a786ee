# cordon-agent %preun ($1: 0 = erase, 1 or more = upgrade). On erase the agent stops and
# the unit is disabled; an isolation stays in force (its nftables table or pinned eBPF
# programs outlive the agent),
# so say so and how to release it.
if [ "$1" -eq 0 ]; then
    state=/var/lib/cordon/enforcer.json
    isolated=no
    if out=$(cordon-enforcer --state "$state" status 2>/dev/null); then
        if printf '%s\n' "$out" | grep -Eq '^(isolated: +yes|in force: +yes)'; then
            isolated=yes
        fi
    elif [ -f "$state" ] && ! grep -Eq '"isolated": *null' "$state"; then
        isolated=yes
    fi
    if [ "$isolated" = yes ]; then
        echo "cordon-agent: THIS HOST IS ISOLATED by Cordon, and removing the package does NOT release it."
        echo "  The isolation (nftables table 'inet cordon', or the eBPF programs pinned under"
        echo "  /sys/fs/bpf/cordon) stays in force after the agent is gone, until released or reboot."
        echo "  To release it before removing:   cordon-enforcer release --reason \"...\""
        echo "  or through the collector:        cordon release <host>"
        echo "  After removal (no cordon-enforcer any more):"
        echo "    nft delete table inet cordon   and/or   rm -r /sys/fs/bpf/cordon"
    fi
    systemctl --no-reload disable --now cordon-agent.service >/dev/null 2>&1 || :
fi
