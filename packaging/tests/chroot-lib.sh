# Shared by the packaging tests: a pristine Debian bookworm (minbase) root made once with
# debootstrap and cached as a tarball, so CI reruns skip the download.
# Sourced, not run. Needs root, debootstrap and network access to the Debian mirror.

CHROOT_CACHE_DIR=${CHROOT_CACHE_DIR:-/var/cache/cordon-test}
CHROOT_SUITE=${CHROOT_SUITE:-bookworm}
CHROOT_MIRROR=${CHROOT_MIRROR:-http://deb.debian.org/debian}
# Packages added to minbase (comma-separated): set by chroot_include below before
# ensure_chroot_tarball. The cache's name carries a hash of the list, so a new dependency
# makes a new cache (and the old ones are deleted).
CHROOT_INCLUDE=${CHROOT_INCLUDE:-systemd}

# chroot_include DEB...: systemd (its units let `systemd-analyze verify --root` resolve ours
# as on a real host) plus every package the debs depend on, so that plain `dpkg -i` works
# offline in the chroot. Alternatives ("a | b") take the first.
chroot_include() {
  local deb deps=""
  for deb in "$@"; do
    deps+=$(dpkg-deb -f "$deb" Depends | tr ',' '\n')$'\n'
  done
  CHROOT_INCLUDE=$( { echo systemd; printf '%s' "$deps" | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g'; } |
    grep -v '^$' | sort -u | paste -sd, -)
}

chroot_tarball() {
  local key
  key=$(printf '%s %s %s' "$CHROOT_SUITE" "$CHROOT_MIRROR" "$CHROOT_INCLUDE" | sha256sum | cut -c1-12)
  printf '%s/debian-%s-minbase-%s.tar.gz\n' "$CHROOT_CACHE_DIR" "$CHROOT_SUITE" "$key"
}

# Makes the cached tarball when it is missing. The root is built in a temporary directory
# and the tarball renamed into place only when complete, so an interrupted run leaves no
# half-made cache behind.
# Sets CHROOT_TARBALL, making it first when it is missing.
ensure_chroot_tarball() {
  CHROOT_TARBALL=$(chroot_tarball)
  [ -s "$CHROOT_TARBALL" ] && return 0
  mkdir -p "$CHROOT_CACHE_DIR"
  find "$CHROOT_CACHE_DIR" -maxdepth 1 -name "debian-$CHROOT_SUITE-minbase-*.tar.gz" -delete
  local build
  build=$(mktemp -d "$CHROOT_CACHE_DIR/build.XXXXXX")
  echo "==> debootstrap $CHROOT_SUITE (minbase + $CHROOT_INCLUDE) from $CHROOT_MIRROR, once; cached in $CHROOT_TARBALL"
  if ! debootstrap --variant=minbase --include="$CHROOT_INCLUDE" "$CHROOT_SUITE" "$build/root" "$CHROOT_MIRROR" \
    >"$build/debootstrap.log" 2>&1; then
    tail -n 30 "$build/debootstrap.log" >&2
    rm -rf "$build"
    echo "FAIL: debootstrap of $CHROOT_SUITE failed (log above)" >&2
    return 1
  fi
  # Nothing of the package cache is needed afterwards.
  rm -rf "$build/root/var/cache/apt/archives/"*.deb
  tar -C "$build/root" --numeric-owner -czf "$build/root.tar.gz" .
  mv "$build/root.tar.gz" "$CHROOT_TARBALL"
  rm -rf "$build"
}
