#!/usr/bin/env bash
# Checks the Kubernetes manifests in k8s/ (scripts/test.sh runs it; so can you):
#   yamllint     every YAML file under k8s/ (k8s/.yamllint, warnings fail too)
#   render       `kubectl kustomize` of k8s/, overlays/gpu/, ingest/ and tls/
#   base, gpu    the rendered objects (with ingest/) against the Kubernetes OpenAPI
#                schemas (npm kubernetes-models) and the invariants of checks.js
#   tls          the cert-manager objects (schema-less: CRDs) through the same checks
#   mutations    checks.test.js: each invariant fails on a broken copy of the objects
#   broken_tree  the whole pipeline fails on broken copies of the files themselves
# Prints one line per check in Bazel's form ("//k8s/validate:NAME PASSED in 1.2s"), which
# scripts/test.sh counts with the Bazel tests; exit code 1 if any check failed.
# Needs kubectl, node, yamllint and k8s/validate/node_modules: scripts/setup.sh.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/k8s/validate
CHECK_LABEL=//k8s/validate
CHECK_SHOW=0
# shellcheck source=scripts/check_lib.sh
source "$repo/scripts/check_lib.sh"

missing=()
for tool in kubectl node yamllint; do command -v "$tool" > /dev/null || missing+=("$tool"); done
[[ -d $here/node_modules/kubernetes-models ]] || missing+=("k8s/validate/node_modules (npm ci)")
if ((${#missing[@]})); then
  echo "k8s/validate: missing ${missing[*]}: run scripts/setup.sh"
  result tools "$(now_ms)" FAILED
  exit 1
fi

# render TREE OUT: every kustomization of TREE (a copy of k8s/) into OUT/*.yaml.
render() {
  local tree=$1 out=$2
  mkdir -p "$out"
  kubectl kustomize "$tree" > "$out/base.yaml" 2> "$out/base.err" || { cat "$out/base.err"; return 1; }
  kubectl kustomize "$tree/overlays/gpu" > "$out/gpu.yaml" 2> "$out/gpu.err" || { cat "$out/gpu.err"; return 1; }
  kubectl kustomize "$tree/ingest" > "$out/ingest.yaml" || return 1
  kubectl kustomize "$tree/tls" > "$out/tls.yaml" || return 1
}
validate() {  # OUT SET: the rendered set through checks.js
  local out=$1
  case $2 in
    base) node "$here/validate.js" --repo="$repo" "$out/base.yaml" "$out/ingest.yaml" ;;
    gpu) node "$here/validate.js" --gpu --repo="$repo" "$out/gpu.yaml" "$out/ingest.yaml" ;;
    tls) node "$here/validate.js" --repo="$repo" "$out/tls.yaml" ;;
  esac
}
pipeline() {  # TREE OUT: everything a tree must pass
  yamllint -s -c "$1/.yamllint" "$1" && render "$1" "$2" && validate "$2" base &&
    validate "$2" gpu && validate "$2" tls
}

check yamllint yamllint -s -c "$repo/k8s/.yamllint" "$repo/k8s"
check render render "$repo/k8s" "$work/rendered"
if [[ -s $work/rendered/tls.yaml ]]; then
  check base validate "$work/rendered" base
  check gpu validate "$work/rendered" gpu
  check tls validate "$work/rendered" tls
  check mutations node "$here/checks.test.js" --repo="$repo" "$work/rendered/base.yaml" \
    "$work/rendered/ingest.yaml"
fi

# The same pipeline on copies of k8s/ with one file broken each: it must fail.
broken_trees() {
  local n=0 tree
  # An unbroken copy passes: the broken ones fail for what was broken, not the copying.
  mkdir -p "$work/tree0"
  (cd "$repo/k8s" && tar --exclude=node_modules -cf - .) | (cd "$work/tree0" && tar -xf -)
  pipeline "$work/tree0" "$work/tree0.out" || { echo "broken_tree: an unbroken copy fails"; return 1; }
  while IFS='|' read -r file from to; do
    n=$((n + 1))
    tree=$work/tree$n
    mkdir -p "$tree"
    (cd "$repo/k8s" && tar --exclude=node_modules -cf - .) | (cd "$tree" && tar -xf -)
    grep -qF -- "$from" "$tree/$file" || { echo "broken_tree: \"$from\" not in $file"; return 1; }
    sed -i "s|$from|$to|" "$tree/$file"
    if pipeline "$tree" "$tree.out" > "$tree.log" 2>&1; then
      echo "broken_tree: $file with \"$from\" -> \"$to\" passed the checks"
      return 1
    fi
  done <<'CASES'
base/router.yaml|svc.cluster.local:50063|svc.cluster.local:50064
base/decoder.yaml|livenessProbe:|livenessProbeX:
base/network-policies.yaml|port: 6379}|port: 6380}
ingest/ingest-job.yaml|completions: 8|completions: 6
base/redis.yaml|readOnlyRootFilesystem: true|readOnlyRootFilesystem: false
base/kustomization.yaml|  - router.yaml|  - routers.yaml
overlays/gpu/gpu-patch.yaml|nvidia.com/gpu: 1}|example.com/gpu: 1}
base/configmap.yaml|KV_STORE: redis|KV_STORE:   redis  # trailing   
CASES
  echo "$n broken copies of k8s/, each rejected"
}
check broken_tree broken_trees

exit "$failed"
