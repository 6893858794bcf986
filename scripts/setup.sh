#!/usr/bin/env bash
# Installs everything BlockServe needs to build and test, from Debian's packages only.
# Safe to run repeatedly: apt skips what is already installed.
set -euo pipefail

PACKAGES=(
  bazel-bootstrap            # Bazel 4.2.3, works offline with the stand-ins in third_party/
  g++ python3
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev
  libhiredis-dev redis-server
  redis-tools                # redis-cli: the tests' Redis Cluster is joined with it
  libgtest-dev libgmock-dev
  libopenblas-dev
  nlohmann-json3-dev
  libpcre2-dev
  libssl-dev openssl         # TLS certificates: checks, test PKI, the demo CA
  clang-14 libclang-rt-14-dev  # libFuzzer and clang's sanitizer runtimes: scripts/fuzz.sh
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
