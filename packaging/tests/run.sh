#!/usr/bin/env bash
# Packaging tests (part of `make test`; alone: `make test-packages` or
# `bash packaging/tests/run.sh`). As root:
#   1. builds the packages (scripts/packages.sh; SKIP_BUILD=1 takes those already in
#      $CARGO_TARGET_DIR/packages),
#   2. inspects the .deb and .rpm files: names, versions, file lists, modes and owners,
#      conffiles, maintainer scripts, dependencies,
#   3. lints the debs with lintian (overrides in packaging/deb/*/lintian-overrides),
#   4. installs the debs in a fresh Debian bookworm chroot (debootstrap, cached under
#      /var/cache/cordon-test) and runs the binaries there; removes, purges and reinstalls
#      them, with and without a recorded isolation,
#   5. checks both units with systemd-analyze verify inside that root, and that verify
#      does fail on a broken unit.
# Each check prints what it looked at when it fails; the script exits non-zero then.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
# shellcheck source=packaging/tests/chroot-lib.sh
source packaging/tests/chroot-lib.sh

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$repo/$target ;; esac
pkgs=$target/packages

failures=0
passes=0
fail() { printf 'FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }
pass() { printf 'ok:   %s\n' "$*"; passes=$((passes + 1)); }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# expect DESCRIPTION COMMAND...: the command must succeed.
expect() {
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then pass "$what"; else fail "$what: \`$*\` failed:"; printf '%s\n' "$out" | sed 's/^/      /' >&2; fi
}
# contains DESCRIPTION HAYSTACK REGEX: an extended regex must match a line of the text.
# (Here-strings, not pipes: with pipefail, grep -q quitting early could fail the pipe.)
contains() {
  if grep -Eq -- "$3" <<<"$2"; then pass "$1"; else
    fail "$1: no line matches /$3/ in:"; printf '%s\n' "$2" | sed 's/^/      /' >&2; fi
}
lacks() {
  if grep -Eq -- "$3" <<<"$2"; then
    fail "$1: a line matches /$3/ in:"; printf '%s\n' "$2" | sed 's/^/      /' >&2; else pass "$1"; fi
}

[ "$(id -u)" = 0 ] || die "packaging tests need root (chroot, dpkg -i)"
for tool in dpkg-deb rpm lintian debootstrap systemd-analyze; do
  command -v "$tool" >/dev/null || die "$tool is missing (run: make setup)"
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in [workspace.package] of Cargo.toml"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building the packages (scripts/packages.sh)"
  bash scripts/packages.sh
fi

one() { # one GLOB: the single file matching it
  local m=("$pkgs"/$1)
  [ ${#m[@]} = 1 ] && [ -f "${m[0]}" ] || die "expected one $1 in $pkgs, found: ${m[*]}"
  printf '%s\n' "${m[0]}"
}
agent_deb=$(one "cordon-agent_${version}-1_*.deb")
collector_deb=$(one "cordon-collector_${version}-1_*.deb")
agent_rpm=$(one "cordon-agent-${version}-1.*.rpm")
collector_rpm=$(one "cordon-collector-${version}-1.*.rpm")
pass "four packages of version $version in $pkgs"

# --- 2. the .deb files ---------------------------------------------------------------
echo "==> inspecting the debs"
# deb_files DEB: "MODE OWNER/GROUP PATH" for every file (cargo-deb writes numeric owners,
# dpkg-deb -b names: either way root).
deb_files() { dpkg-deb -c "$1" | awk '{print $1, $2, $6}'; }
# ctrl_modes DEB: "MODE NAME" of the control archive's members.
ctrl_modes() { dpkg-deb --ctrl-tarfile "$1" | tar -tvf - | awk '{print $1, $6}'; }

f=$(deb_files "$agent_deb")
contains "agent deb: cordon-agent 0755" "$f" '^-rwxr-xr-x (0/0|root/root) \./usr/bin/cordon-agent$'
contains "agent deb: cordon-enforcer 0755" "$f" '^-rwxr-xr-x (0/0|root/root) \./usr/bin/cordon-enforcer$'
contains "agent deb: agent.toml 0640 root" "$f" '^-rw-r----- (0/0|root/root) \./etc/cordon/agent\.toml$'
contains "agent deb: unit 0644" "$f" '^-rw-r--r-- (0/0|root/root) \./lib/systemd/system/cordon-agent\.service$'
contains "agent deb: README" "$f" '\./usr/share/doc/cordon-agent/README\.md$'
lacks "agent deb: nothing world-writable" "$f" '^-.......w.'
lacks "agent deb: no collector files" "$f" 'cordon-collector|/usr/bin/cordon$'
c=$(dpkg-deb -f "$agent_deb" Package Version Architecture Depends Recommends)
contains "agent deb: version from the workspace" "$c" "^Version: ${version}-1$"
contains "agent deb: depends on libc6" "$c" '^Depends: .*libc6'
contains "agent deb: recommends nftables" "$c" '^Recommends: .*nftables'
contains "agent deb: conffile" "$(dpkg-deb -I "$agent_deb" conffiles)" '^/etc/cordon/agent\.toml$'
m=$(ctrl_modes "$agent_deb")
for s in postinst prerm postrm; do
  contains "agent deb: $s 0755" "$m" "^-rwxr-xr-x \./$s$"
done
contains "agent deb: prerm checks for an isolation" "$(dpkg-deb -I "$agent_deb" prerm)" 'cordon-enforcer .*status'

f=$(deb_files "$collector_deb")
contains "collector deb: cordon-collector 0755" "$f" '^-rwxr-xr-x (0/0|root/root) \./usr/bin/cordon-collector$'
contains "collector deb: cordon 0755" "$f" '^-rwxr-xr-x (0/0|root/root) \./usr/bin/cordon$'
contains "collector deb: collector.toml 0640" "$f" '^-rw-r----- (0/0|root/root) \./etc/cordon/collector\.toml$'
contains "collector deb: unit 0644" "$f" '^-rw-r--r-- (0/0|root/root) \./lib/systemd/system/cordon-collector\.service$'
contains "collector deb: example playbook" "$f" '\./usr/share/doc/cordon-collector/examples/playbooks/isolate-on-violation\.yaml$'
lacks "collector deb: nothing world-writable" "$f" '^-.......w.'
lacks "collector deb: no agent files" "$f" 'cordon-agent|cordon-enforcer'
c=$(dpkg-deb -f "$collector_deb" Version Depends)
contains "collector deb: version from the workspace" "$c" "^Version: ${version}-1$"
contains "collector deb: depends on adduser" "$c" '^Depends: .*adduser'
contains "collector deb: conffile" "$(dpkg-deb -I "$collector_deb" conffiles)" '^/etc/cordon/collector\.toml$'
m=$(ctrl_modes "$collector_deb")
for s in postinst prerm postrm; do
  contains "collector deb: $s 0755" "$m" "^-rwxr-xr-x \./$s$"
done
contains "collector deb: postinst makes the system user" "$(dpkg-deb -I "$collector_deb" postinst)" 'adduser --system'

# The Debian changelog must have an entry for this version (dpkg and lintian read it).
for deb in "$agent_deb" "$collector_deb"; do
  name=$(dpkg-deb -f "$deb" Package)
  contains "$name deb: changelog entry for $version-1" \
    "$(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - "./usr/share/doc/$name/changelog.Debian.gz" | gzip -dc | head -n1)" \
    "^$name \\($version-1\\) "
done

# --- 2b. the .rpm files --------------------------------------------------------------
echo "==> inspecting the rpms"
rpm_files() { rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]' "$1" 2>/dev/null; }
# rpm_script RPM TAG: the body of one scriptlet.
rpm_script() { rpm -qp --qf "%{$2}\n" "$1" 2>/dev/null; }

f=$(rpm_files "$agent_rpm")
contains "agent rpm: cordon-agent 0755" "$f" '^-rwxr-xr-x root/root /usr/bin/cordon-agent$'
contains "agent rpm: cordon-enforcer 0755" "$f" '^-rwxr-xr-x root/root /usr/bin/cordon-enforcer$'
contains "agent rpm: agent.toml 0640" "$f" '^-rw-r----- root/root /etc/cordon/agent\.toml$'
contains "agent rpm: unit 0644" "$f" '^-rw-r--r-- root/root /usr/lib/systemd/system/cordon-agent\.service$'
contains "agent rpm: version" "$(rpm -qp --qf '%{VERSION}\n' "$agent_rpm" 2>/dev/null)" "^${version}$"
contains "agent rpm: config(noreplace)" "$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$agent_rpm" 2>/dev/null)" '^cn +/etc/cordon/agent\.toml$'
contains "agent rpm: requires systemd" "$(rpm -qpR "$agent_rpm" 2>/dev/null)" '^systemd'
contains "agent rpm: recommends nftables" "$(rpm -qp --recommends "$agent_rpm" 2>/dev/null)" '^nftables'
# cargo-generate-rpm packages binaries as they are: they must be the stripped copies.
rpm_bin_info() { rpm2archive - <"$1" | tar -xzOf - ".$2" >"$pkgs/.probe" && file -b "$pkgs/.probe"; rm -f "$pkgs/.probe"; }
contains "agent rpm: cordon-agent stripped" "$(rpm_bin_info "$agent_rpm" /usr/bin/cordon-agent)" '^ELF .*, stripped$'
for tag in POSTIN PREUN POSTUN; do
  body=$(rpm_script "$agent_rpm" "$tag")
  contains "agent rpm: %$tag uses systemctl" "$body" 'systemctl'
  contains "agent rpm: %$tag tells install/upgrade/erase apart by \$1" "$body" '"\$1" -(eq|ge) [012]'
  expect "agent rpm: %$tag is valid sh" sh -n -c "$body"
done
contains "agent rpm: %preun checks for an isolation" "$(rpm_script "$agent_rpm" PREUN)" 'cordon-enforcer .*status'

f=$(rpm_files "$collector_rpm")
contains "collector rpm: cordon-collector 0755" "$f" '^-rwxr-xr-x root/root /usr/bin/cordon-collector$'
contains "collector rpm: cordon 0755" "$f" '^-rwxr-xr-x root/root /usr/bin/cordon$'
contains "collector rpm: collector.toml 0640 root:cordon" "$f" '^-rw-r----- root/cordon /etc/cordon/collector\.toml$'
contains "collector rpm: cordon-collector stripped" "$(rpm_bin_info "$collector_rpm" /usr/bin/cordon-collector)" '^ELF .*, stripped$'
contains "collector rpm: unit 0644" "$f" '^-rw-r--r-- root/root /usr/lib/systemd/system/cordon-collector\.service$'
contains "collector rpm: version" "$(rpm -qp --qf '%{VERSION}\n' "$collector_rpm" 2>/dev/null)" "^${version}$"
contains "collector rpm: config(noreplace)" "$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$collector_rpm" 2>/dev/null)" '^cn +/etc/cordon/collector\.toml$'
contains "collector rpm: %pre makes the system user" "$(rpm_script "$collector_rpm" PREIN)" 'useradd -r'
for tag in PREIN POSTIN PREUN POSTUN; do
  expect "collector rpm: %$tag is valid sh" sh -n -c "$(rpm_script "$collector_rpm" "$tag")"
done
for tag in POSTIN PREUN POSTUN; do
  contains "collector rpm: %$tag tells install/upgrade/erase apart by \$1" "$(rpm_script "$collector_rpm" "$tag")" '"\$1" -(eq|ge) [012]'
done

# --- 3. lintian ----------------------------------------------------------------------
echo "==> lintian"
for deb in "$agent_deb" "$collector_deb"; do
  if out=$(lintian --fail-on error,warning --display-info "$deb" 2>&1); then
    pass "lintian $(basename "$deb") (no error or warning)"
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/      /'
  else
    fail "lintian $(basename "$deb"):"; printf '%s\n' "$out" | sed 's/^/      /' >&2
  fi
done

# --- 4. install in a Debian chroot ---------------------------------------------------
echo "==> installing in a fresh Debian $CHROOT_SUITE chroot"
chroot_include "$agent_deb" "$collector_deb"
ensure_chroot_tarball
root=$(mktemp -d /var/tmp/cordon-pkgtest.XXXXXX)
cleanup() { rm -rf --one-file-system "$root"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
tar -C "$root" -xzf "$CHROOT_TARBALL"
# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp "$agent_deb" "$collector_deb" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C "$@"; }
adeb=/tmp/$(basename "$agent_deb")
cdeb=/tmp/$(basename "$collector_deb")

expect "dpkg -i both packages" in_root dpkg -i "$adeb" "$cdeb"
contains "dpkg: both installed" "$(in_root dpkg-query -W -f='${Package} ${Status}\n' cordon-agent cordon-collector)" '^cordon-collector install ok installed$'
contains "dpkg: agent installed" "$(in_root dpkg-query -W -f='${Package} ${Status}\n' cordon-agent)" '^cordon-agent install ok installed$'
contains "cordon-agent --version" "$(in_root cordon-agent --version 2>&1)" "^cordon-agent ${version}$"
contains "cordon-enforcer --version" "$(in_root cordon-enforcer --version 2>&1)" "^cordon-enforcer ${version}$"
contains "cordon-collector --version" "$(in_root cordon-collector --version 2>&1)" "^cordon-collector ${version}$"
contains "cordon --version" "$(in_root cordon --version 2>&1)" "^cordon ${version}$"
expect "cordon-agent validate on the shipped config" in_root cordon-agent validate --config /etc/cordon/agent.toml
expect "cordon-collector validate on the shipped config" in_root cordon-collector validate --config /etc/cordon/collector.toml
# validate must be able to fail (so the ExecStartPre= is worth something).
printf '[capture]\npoll_interval_ms = "soon"\n' >"$root/tmp/bad-agent.toml"
if out=$(in_root cordon-agent validate --config /tmp/bad-agent.toml 2>&1); then
  fail "cordon-agent validate accepted a bad config: $out"
else
  contains "cordon-agent validate names the bad field" "$out" 'poll_interval_ms'
fi
st() { in_root stat -c '%a %U:%G' "$1" 2>&1; }
contains "agent.toml installed 0640 root:root" "$(st /etc/cordon/agent.toml)" '^640 root:root$'
contains "collector.toml installed 0640 root:cordon" "$(st /etc/cordon/collector.toml)" '^640 root:cordon$'
contains "/var/lib/cordon 0700 root" "$(st /var/lib/cordon)" '^700 root:root$'
contains "/var/lib/cordon-collector 0700 cordon" "$(st /var/lib/cordon-collector)" '^700 cordon:cordon$'
u=$(in_root getent passwd cordon || true)
contains "system user cordon (uid < 1000, no login shell)" "$u" '^cordon:x:[1-9][0-9]{0,2}:[0-9]+:[^:]*:/var/lib/cordon-collector:/usr/sbin/nologin$'
for unit in cordon-agent cordon-collector; do
  expect "$unit.service enabled (multi-user.target.wants)" test -L "$root/etc/systemd/system/multi-user.target.wants/$unit.service"
done

# --- 5. systemd-analyze verify ---------------------------------------------------------
echo "==> systemd-analyze verify"
# In the installed root: ExecStart= binaries, users and the units themselves resolve
# there. SYSTEMD_LOG_LEVEL=warning hides the host's own (unrelated) notices.
verify() { SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --root="$root" "$@" 2>&1; }
for unit in cordon-agent cordon-collector; do
  if out=$(verify "$root/lib/systemd/system/$unit.service"); then
    if [ -n "$out" ]; then fail "systemd-analyze verify $unit.service warns:"; printf '%s\n' "$out" | sed 's/^/      /' >&2
    else pass "systemd-analyze verify $unit.service"; fi
  else
    fail "systemd-analyze verify $unit.service:"; printf '%s\n' "$out" | sed 's/^/      /' >&2
  fi
done
# What the issue asks of the agent's unit, as installed.
u=$(cat "$root/lib/systemd/system/cordon-agent.service")
contains "agent unit: Type=notify" "$u" '^Type=notify$'
contains "agent unit: WatchdogSec=" "$u" '^WatchdogSec=[0-9]+s$'
contains "agent unit: validates its config first" "$u" '^ExecStartPre=/usr/bin/cordon-agent validate --config /etc/cordon/agent\.toml$'
contains "agent unit: Restart=on-failure" "$u" '^Restart=on-failure$'
contains "agent unit: ProtectSystem=strict" "$u" '^ProtectSystem=strict$'
contains "agent unit: writes /var/lib/cordon and /sys/fs/bpf only" "$u" '^ReadWritePaths=/var/lib/cordon -/sys/fs/bpf$'
contains "agent unit: StateDirectory=cordon" "$u" '^StateDirectory=cordon$'
contains "agent unit: a capability bounding set" "$u" '^CapabilityBoundingSet=CAP_'
lacks "agent unit: no CAP_SYS_ADMIN" "$(grep '^CapabilityBoundingSet=' <<<"$u")" 'CAP_SYS_ADMIN'
u=$(cat "$root/lib/systemd/system/cordon-collector.service")
contains "collector unit: runs as cordon" "$u" '^User=cordon$'
contains "collector unit: no capabilities" "$u" '^CapabilityBoundingSet=$'
contains "collector unit: StateDirectory=cordon-collector" "$u" '^StateDirectory=cordon-collector$'

# The same check must reject broken units, or it proves nothing: a missing binary makes
# verify exit non-zero, a misspelt setting only makes it warn (so warnings fail too).
broken=$root/lib/systemd/system/cordon-broken.service
for edit in 's|^ExecStart=/usr/bin/cordon-agent |ExecStart=/usr/bin/cordon-agent-missing |' \
  's|^WatchdogSec=|WatchdogSecs=|' 's|^Type=notify|Type=notfy|'; do
  sed "$edit" "$root/lib/systemd/system/cordon-agent.service" >"$broken"
  if cmp -s "$broken" "$root/lib/systemd/system/cordon-agent.service"; then
    fail "the unit did not change with $edit (test out of date)"
  elif out=$(verify "$broken") && [ -z "$out" ]; then
    fail "systemd-analyze verify accepted a broken unit ($edit)"
  else
    pass "systemd-analyze verify rejects a broken unit ($edit)"
  fi
done
rm -f "$broken"

# --- 4b. upgrade, remove, purge --------------------------------------------------------
echo "==> upgrade, remove and purge"
# An upgrade: the same package repacked with a higher version. A local change to the
# conffile and the enrollment state must survive it.
up=$root/tmp/upgrade
dpkg-deb -R "$agent_deb" "$up"
sed -i "s/^Version: .*/Version: ${version}-1+pkgtest1/" "$up/DEBIAN/control"
dpkg-deb --root-owner-group -b "$up" "$root/tmp/agent-upgrade.deb" >/dev/null
rm -rf "$up"
printf '\n# local change\nhost_name = "pkgtest"\n' >>"$root/etc/cordon/agent.toml"
echo "key" >"$root/var/lib/cordon/agent.key"
chmod 600 "$root/var/lib/cordon/agent.key"
expect "upgrade the agent (dpkg -i of a newer version)" in_root dpkg -i /tmp/agent-upgrade.deb
contains "upgraded" "$(in_root dpkg-query -W -f='${Version}\n' cordon-agent)" "^${version}-1\+pkgtest1$"
contains "local change to agent.toml kept on upgrade" "$(cat "$root/etc/cordon/agent.toml")" '^host_name = "pkgtest"$'
contains "agent.toml still 0640 after upgrade" "$(st /etc/cordon/agent.toml)" '^640 root:root$'
expect "state kept on upgrade" test -f "$root/var/lib/cordon/agent.key"
expect "still enabled after upgrade" test -L "$root/etc/systemd/system/multi-user.target.wants/cordon-agent.service"

# Removal with an isolation on record: it stays, and the admin is told how to release it.
cat >"$root/var/lib/cordon/enforcer.json" <<'JSON'
{
  "version": 1,
  "isolated": {
    "command_id": 7,
    "reason": "package test",
    "by": "pkgtest",
    "since_unix": 1700000000,
    "expires_at_unix": null
  },
  "exceptions": null,
  "history": []
}
JSON
out=$(in_root dpkg -r cordon-agent 2>&1) || fail "dpkg -r cordon-agent: $out"
contains "remove while isolated: says the host stays isolated" "$out" 'THIS HOST IS ISOLATED'
contains "remove while isolated: says how to release" "$out" 'cordon-enforcer release'
expect "remove keeps agent.toml" test -f "$root/etc/cordon/agent.toml"
expect "remove keeps the state" test -f "$root/var/lib/cordon/agent.key"
out=$(in_root dpkg -P cordon-agent 2>&1) || fail "dpkg -P cordon-agent: $out"
contains "purge while isolated: keeps the isolation record, says so" "$out" 'kept /var/lib/cordon/enforcer\.json'
expect "purge while isolated: enforcer.json kept" test -f "$root/var/lib/cordon/enforcer.json"
expect "purge while isolated: the key is gone" test ! -e "$root/var/lib/cordon/agent.key"
expect "purge: agent.toml gone" test ! -e "$root/etc/cordon/agent.toml"
expect "purge: unit no longer enabled" test ! -e "$root/etc/systemd/system/multi-user.target.wants/cordon-agent.service"

# Without an isolation, purge removes all state, silently.
expect "dpkg -i the agent once more" in_root dpkg -i "$adeb"
printf '{\n  "version": 1,\n  "isolated": null,\n  "exceptions": null,\n  "history": []\n}\n' >"$root/var/lib/cordon/enforcer.json"
out=$(in_root dpkg -P cordon-agent 2>&1) || fail "dpkg -P cordon-agent: $out"
lacks "purge without isolation: no isolation notice" "$out" 'ISOLATED|kept'
expect "purge without isolation: /var/lib/cordon gone" test ! -e "$root/var/lib/cordon"

out=$(in_root dpkg -P cordon-collector 2>&1) || fail "dpkg -P cordon-collector: $out"
expect "collector purge: data directory gone" test ! -e "$root/var/lib/cordon-collector"
expect "collector purge: config gone" test ! -e "$root/etc/cordon/collector.toml"
expect "collector purge: /etc/cordon gone" test ! -e "$root/etc/cordon"

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
