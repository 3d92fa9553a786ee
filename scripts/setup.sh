#!/usr/bin/env bash
# Installs what building and testing Cordon needs, idempotently: each step is skipped when
# its result is already present. Safe to run again and again (make setup runs it).
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup: installing system packages needs root (run: sudo make setup)" >&2
    exit 1
  fi
}

# cmake, libssl-dev and libcurl4-openssl-dev build the static librdkafka of the Kafka output
# (rdkafka with cmake-build, ssl and curl). The packaging tests (packaging/tests) inspect
# the packages (dpkg-dev, rpm, file), lint the debs (lintian), install them in a
# debootstrap'd chroot and check the units (systemd-analyze, from systemd). postgresql-15:
# the store tests start their own PostgreSQL server (initdb, postgres) for the cluster
# backend; util-linux's setpriv runs it unprivileged inside a lab namespace. chromium: the
# web console's browser tests (tests/console/browser.py, headless, driven by Playwright).
APT_PKGS=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev nftables iproute2 curl
  python3 procps socat cmake libssl-dev libcurl4-openssl-dev
  dpkg-dev rpm file lintian debootstrap systemd postgresql-15 util-linux chromium)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "apt packages present"
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  log "rustup: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
for comp in rust-src clippy rustfmt; do
  if ! rustup +nightly component list --installed | grep -q "^$comp"; then
    log "rustup: adding $comp to nightly"
    rustup +nightly component add "$comp"
  fi
done
log "nightly rust-src, clippy and rustfmt present"

if ! command -v bpf-linker >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/bpf-linker" ]; then
  log "cargo: building bpf-linker against LLVM 22 (several minutes, once)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --locked --no-default-features --features llvm-22
else
  log "bpf-linker present"
fi
# tansu: a Kafka-protocol broker for the Kafka output tests (tests/src/kafka_broker.rs), in
# memory storage only (dynostore: memory:// and s3://). About 13 to 20 minutes on 2 cores, once.
TANSU_VERSION=0.6.0
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  log "cargo: building tansu $TANSU_VERSION (a Kafka-protocol test broker; many minutes, once)"
  cargo install tansu --version "$TANSU_VERSION" --locked --no-default-features --features dynostore
else
  log "tansu present"
fi
# duo_client (Duo's own Python client, from PyPI): the Duo signing tests compare Cordon's
# request signatures with the ones it computes (collector/connectors/tests/duo_vectors.py).
if ! python3 -c 'import duo_client' >/dev/null 2>&1; then
  log "pip: installing duo_client (test vectors for the Duo request signatures)"
  python3 -m pip install --quiet duo_client
else
  log "duo_client present"
fi
# Playwright for Python drives Debian's Chromium in the console's browser tests
# (executable_path=/usr/bin/chromium: it never downloads a browser of its own).
PLAYWRIGHT_VERSION=1.65.3
if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '$PLAYWRIGHT_VERSION')" >/dev/null 2>&1; then
  log "pip: installing playwright $PLAYWRIGHT_VERSION (the console's browser tests)"
  python3 -m pip install --quiet "playwright==$PLAYWRIGHT_VERSION"
else
  log "playwright present"
fi
# Package builders for `make packages` (scripts/packages.sh), pinned so every machine makes
# the same packages. A few minutes each, once.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
if ! command -v cargo-deb >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deb" ]; then
  log "cargo: building cargo-deb $CARGO_DEB_VERSION (once)"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
else
  log "cargo-deb present"
fi
if ! command -v cargo-generate-rpm >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-generate-rpm" ]; then
  log "cargo: building cargo-generate-rpm $CARGO_GENERATE_RPM_VERSION (once)"
  cargo install cargo-generate-rpm --version "$CARGO_GENERATE_RPM_VERSION" --locked
else
  log "cargo-generate-rpm present"
fi
log "setup done"
