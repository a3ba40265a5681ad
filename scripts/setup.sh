#!/usr/bin/env bash
# Installs lmlab's build dependencies (Debian packages only) and configures + builds a Release tree in build/.
# Usage: scripts/setup.sh [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config
          libfmt-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev
          libgtest-dev libgmock-dev libbenchmark-dev libsqlite3-dev libcpp-httplib-dev liburing-dev
          libxml2-dev)  # libxml2: tests parse the reports' SVG charts
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$(nproc)"
