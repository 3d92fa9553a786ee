# cordon-collector %pre ($1: 1 = install, 2 or more = upgrade): the `cordon` system user,
# needed before the files are laid down (collector.toml belongs to group cordon).
getent group cordon >/dev/null || groupadd -r cordon
getent passwd cordon >/dev/null || \
    useradd -r -g cordon -d /var/lib/cordon-collector -M -s /sbin/nologin \
        -c "Cordon collector" cordon
exit 0
