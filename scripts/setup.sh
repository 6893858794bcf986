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
  libutf8proc-dev            # Unicode normalization in the tokenizer (NFC, NFKC, ...)
  libxxhash-dev              # XXH3: the KV store's value checksums (kv_store/hash.h)
  libssl-dev openssl         # TLS certificates: checks, test PKI, the demo CA
  clang-14 libclang-rt-14-dev  # libFuzzer and clang's sanitizer runtimes: scripts/fuzz.sh
  yamllint                   # k8s/validate/run.sh
  gnuplot-nox                # the plots of bench/ttft/run.sh and bench/peer/run.sh
)
# Commands that k8s/validate/run.sh needs, from Debian's packages unless the machine has
# them already from elsewhere (a newer kubectl or Node.js is fine; installing Debian's
# package next to it would conflict).
command -v kubectl > /dev/null || PACKAGES+=(kubernetes-client)
command -v node > /dev/null || PACKAGES+=(nodejs)
command -v npm > /dev/null || PACKAGES+=(npm)

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

# The npm packages of the manifest check (k8s/validate/package-lock.json) and of the
# tokenizer comparison (tests/tokenizers/package-lock.json), once per version of each
# lock file.
repo=$(cd "$(dirname "$0")/.." && pwd)
for folder in "$repo/k8s/validate" "$repo/tests/tokenizers"; do
  if ! cmp -s "$folder/package-lock.json" "$folder/node_modules/.installed-lock.json"; then
    echo "setup: npm ci in ${folder#"$repo"/}"
    (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error &&
      cp package-lock.json node_modules/.installed-lock.json)
  fi
done
# llama.cpp for bench/peer (node-llama-cpp, bench/peer/package-lock.json): only its prebuilt
# linux-x64 CPU binary, a direct dependency there. --omit=optional skips the CUDA/Vulkan and
# other platforms' binaries; --ignore-scripts skips node-llama-cpp's postinstall, which
# would otherwise try to download or build llama.cpp when no prebuilt binary fits.
peer=$repo/bench/peer
if ! cmp -s "$peer/package-lock.json" "$peer/node_modules/.installed-lock.json"; then
  echo "setup: npm ci in bench/peer"
  (cd "$peer" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error &&
    cp package-lock.json node_modules/.installed-lock.json)
fi
