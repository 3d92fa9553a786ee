# cordon-collector %preun ($1: 0 = erase, 1 or more = upgrade): stop and disable on erase.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now cordon-collector.service >/dev/null 2>&1 || :
fi
