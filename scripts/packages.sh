#!/usr/bin/env bash
# `make packages`: release build, then cordon-agent and cordon-collector as .deb
# (cargo-deb) and .rpm (cargo-generate-rpm) in $CARGO_TARGET_DIR/packages (target/packages
# by default). The version is the workspace's. Needs cargo-deb and cargo-generate-rpm
# (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
out=$target/packages

"$CARGO" build --release -p cordon-agent -p cordon-enforcer -p cordon-collector

# cargo-deb strips what it packages; cargo-generate-rpm does not, so the rpms take
# stripped copies (the build's own binaries keep their symbols).
mkdir -p "$target/release/stripped"
for bin in cordon-agent cordon-enforcer cordon-collector cordon; do
  strip --strip-all -o "$target/release/stripped/$bin" "$target/release/$bin"
done

rm -rf "$out"
mkdir -p "$out"
for pkg in agent collector; do
  "$CARGO" deb -p "cordon-$pkg" --no-build --output "$out/"
  "$CARGO" generate-rpm -p "$pkg" --output "$out/"
done
ls -l "$out"
