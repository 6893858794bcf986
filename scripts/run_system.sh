#!/usr/bin/env bash
# Runs the whole BlockServe system on this machine: builds it, starts passage_encoder,
# query_prefill, decoder and router on free loopback ports over one shared-memory KV
# store, ingests samples/passages.jsonl, asks the sample questions (block attention,
# then one with full prefill to show the TTFT difference), prints the router's stats,
# and shuts everything down cleanly (also on Ctrl-C or an error).
#
# Secure by default, as deployed: a throwaway CA (scripts/make_dev_pki.sh) issues each
# service its certificate, the services talk mutual TLS, and the client reaches the
# router over TLS with a bearer token. --insecure runs everything in plaintext instead.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

usage() {
  cat <<'EOF'
Usage: scripts/run_system.sh [--model_dir DIR | --random_model] [--max_new_tokens N]
                             [--kv_dtype bf16|f32] [--keep_logs] [--no_setup] [--insecure]

  --model_dir DIR      a Hugging Face model folder (config.json, *.safetensors,
                       tokenizer.json); default: models/blockserve-tiny-rag, the shipped
                       block-fine-tuned model (training/README.md)
  --random_model       a small random-weight model written by //engine:make_tiny_model
                       instead (answers are noise; bigger, so the TTFT gap is wider)
  --max_new_tokens N   tokens per answer (default 24)
  --kv_dtype DTYPE     KV element type in the services' engines, store and handoff:
                       bf16 (default, as deployed) or f32 (exact)
  --keep_logs          keep the services' logs (their folder is printed)
  --no_setup           skip scripts/setup.sh (the Debian packages are installed)
  --insecure           plaintext between services and to the router, no token (the
                       services then listen on loopback only, which they enforce)
EOF
}

MODEL_DIR=""
MAX_NEW_TOKENS=24
KV_DTYPE=bf16
RANDOM_MODEL=0
KEEP_LOGS=0
SETUP=1
INSECURE=0
while (($#)); do
  case "$1" in
    --model_dir) MODEL_DIR="${2:?--model_dir needs a folder}"; shift 2 ;;
    --model_dir=*) MODEL_DIR="${1#*=}"; shift ;;
    --max_new_tokens) MAX_NEW_TOKENS="${2:?--max_new_tokens needs a number}"; shift 2 ;;
    --max_new_tokens=*) MAX_NEW_TOKENS="${1#*=}"; shift ;;
    --kv_dtype) KV_DTYPE="${2:?--kv_dtype needs bf16 or f32}"; shift 2 ;;
    --kv_dtype=*) KV_DTYPE="${1#*=}"; shift ;;
    --random_model) RANDOM_MODEL=1; shift ;;
    --keep_logs) KEEP_LOGS=1; shift ;;
    --no_setup) SETUP=0; shift ;;
    --insecure) INSECURE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_system: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ -t 1 ]]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD="" PLAIN=""; fi
section() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
die() { echo "run_system: $*" >&2; exit 1; }

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/blockserve-logs.XXXXXX")
SHM_NAME="/blockserve-run-$$"
declare -A PIDS=()
STARTED=()  # service names in start order
SHUTDOWN_DONE=0

# Stops the router first (no new requests), then the backends: SIGTERM, wait up to
# 20 s for each (SIGKILL after that), check the exit codes, remove the shm segment.
shutdown() {
  ((SHUTDOWN_DONE)) && return 0
  SHUTDOWN_DONE=1
  local failed=0 name pid rc i
  ((${#STARTED[@]})) && section "Shutting down"
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    name=${STARTED[$i]}
    pid=${PIDS[$name]}
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null; rc=$?
      echo "$name had already exited (code $rc)"; failed=1; continue
    fi
    kill -TERM "$pid"
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name did not stop within 20 s; killing it"; kill -KILL "$pid"; failed=1
    fi
    wait "$pid" 2>/dev/null; rc=$?
    if ((rc == 0)); then echo "$name stopped (exit code 0)"; else echo "$name exited with code $rc"; failed=1; fi
  done
  rm -f "/dev/shm/${SHM_NAME#/}"
  if ((failed)); then
    for f in "$LOGS"/*.log; do [[ -e $f ]] && { echo "--- tail of $f"; tail -n 15 "$f"; }; done
    echo "logs kept in $LOGS"
    return 1
  fi
  if ((KEEP_LOGS)); then echo "logs in $LOGS"; else rm -rf "$LOGS"; fi
  return 0
}
on_exit() {
  local rc=$?
  shutdown || rc=1
  exit "$rc"
}
trap on_exit EXIT
trap 'echo; echo "run_system: interrupted"; exit 130' INT TERM

# start NAME BINARY ARGS...: runs a service on a free loopback port, logging to $LOGS.
start() {
  local name=$1; shift
  "$@" --host=127.0.0.1 --port=0 >"$LOGS/$name.log" 2>&1 &
  PIDS[$name]=$!
  STARTED+=("$name")
}

# port_of NAME: waits for the service's {"event":"listening","port":N} line.
port_of() {
  local name=$1 port=""
  for _ in $(seq 600); do
    port=$(grep '"event":"listening"' "$LOGS/$name.log" 2>/dev/null | head -n 1 |
           grep -o '"port":"\{0,1\}[0-9]*' | grep -o '[0-9]*$')
    [[ -n $port ]] && { echo "$port"; return 0; }
    kill -0 "${PIDS[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "run_system: $name did not start; its log:" >&2
  tail -n 20 "$LOGS/$name.log" >&2
  return 1
}

if ((SETUP)); then
  section "Setup (Debian packages)"
  bash scripts/setup.sh || die "setup failed"
fi

section "Building"
bazel build //router //client:blockserve //decoder //query_prefill //passage_encoder \
  //engine:make_tiny_model || die "build failed"
BIN=$(bazel info bazel-bin 2>/dev/null) || die "bazel info failed"
BLOCKSERVE="$BIN/client/blockserve"

section "Model"
[[ -z $MODEL_DIR ]] && ((!RANDOM_MODEL)) && MODEL_DIR=models/blockserve-tiny-rag
if ((RANDOM_MODEL)); then
  MODEL_DIR="${TMPDIR:-/tmp}/blockserve-tiny-model"
  if [[ ! -f $MODEL_DIR/config.json ]]; then
    "$BIN/engine/make_tiny_model" --out "$MODEL_DIR" --hidden_size 256 --intermediate_size 768 \
      --layers 4 --heads 8 --kv_heads 2 || die "make_tiny_model failed"
  fi
  echo "Using a random-weight model in $MODEL_DIR (4 layers, hidden 256, 8 heads / 2 KV heads)."
  echo "Its answers are noise; without --random_model the shipped trained model answers."
  echo "The numbers are real: tokens reused vs computed, FLOPs and TTFT."
else
  [[ -f $MODEL_DIR/config.json ]] || die "no config.json in $MODEL_DIR"
  echo "Using the model in $MODEL_DIR"
  [[ -f $MODEL_DIR/README.md ]] && sed -n '3,4p' "$MODEL_DIR/README.md"
fi

section "Security"
PKI="$LOGS/pki"
if ((INSECURE)); then
  echo "--insecure: plaintext between the services and to the router, no token; loopback only."
  tls() { echo --insecure; }
  CLIENT_AUTH=(--insecure)
  ROUTER_AUTH=()
else
  bash scripts/make_dev_pki.sh "$PKI" >/dev/null || die "make_dev_pki failed"
  tls() { printf '%s\n' "--tls_cert=$PKI/$1.pem" "--tls_key=$PKI/$1.key" "--tls_ca=$PKI/ca.pem"; }
  CLIENT_AUTH=("--tls_ca=$PKI/ca.pem" "--token_file=$PKI/token")
  ROUTER_AUTH=("--tenants_file=$PKI/tenants.json")
  echo "A throwaway CA in $PKI issued each service a certificate naming its role;"
  echo "the services talk mutual TLS and accept calls only from the roles that make them."
  echo "The client reaches the router over TLS with a bearer token of tenant \"demo\""
  echo "(the router holds only its SHA-256, in $PKI/tenants.json)."
fi
mapfile -t ENCODER_TLS < <(tls encoder)
mapfile -t PREFILL_TLS < <(tls prefill)
mapfile -t DECODER_TLS < <(tls decoder)
mapfile -t ROUTER_TLS < <(tls router)

section "Starting the services (KV store: shared memory $SHM_NAME; KV in $KV_DTYPE)"
STORE=(--kv_store=shm "--shm_name=$SHM_NAME" "--kv_dtype=$KV_DTYPE")
start passage_encoder "$BIN/passage_encoder/passage_encoder" "--model_dir=$MODEL_DIR" "${STORE[@]}" \
  "${ENCODER_TLS[@]}"
start query_prefill "$BIN/query_prefill/query_prefill" "--model_dir=$MODEL_DIR" "${STORE[@]}" \
  "${PREFILL_TLS[@]}"
start decoder "$BIN/decoder/decoder" "--model_dir=$MODEL_DIR" "--kv_dtype=$KV_DTYPE" \
  "${DECODER_TLS[@]}"
ENCODER_PORT=$(port_of passage_encoder) || exit 1
PREFILL_PORT=$(port_of query_prefill) || exit 1
DECODER_PORT=$(port_of decoder) || exit 1
start router "$BIN/router/router" "--prefill=127.0.0.1:$PREFILL_PORT" \
  "--decoder=127.0.0.1:$DECODER_PORT" "--encoder=127.0.0.1:$ENCODER_PORT" \
  "${ROUTER_TLS[@]}" ${ROUTER_AUTH[@]+"${ROUTER_AUTH[@]}"}
ROUTER_PORT=$(port_of router) || exit 1
ROUTER="localhost:$ROUTER_PORT"
printf '%-16s 127.0.0.1:%s\n' passage_encoder "$ENCODER_PORT" query_prefill "$PREFILL_PORT" \
  decoder "$DECODER_PORT" router "$ROUTER_PORT"
echo "logs: $LOGS"
bs() { "$BLOCKSERVE" "--router=$ROUTER" "${CLIENT_AUTH[@]}" "$@"; }
bs wait --timeout_s=60 || die "the services did not become healthy"
if ((!INSECURE)); then
  echo "A call without the token is refused:"
  if "$BLOCKSERVE" "--router=$ROUTER" "--tls_ca=$PKI/ca.pem" stats 2>&1 | sed 's/^/  /'; then
    die "the router answered a call without a token"
  fi
fi

section "Ingesting samples/passages.jsonl"
bs ingest samples/passages.jsonl --batch=8 || die "ingest failed"
echo "Again: every passage is already cached, so nothing is encoded:"
bs ingest samples/passages.jsonl || die "ingest failed"

section "Asking the sample questions (Block-Attention: cached passages, only the question computed)"
((RANDOM_MODEL)) && echo "(random weights: the answers are noise; the reuse and timing figures are real)"
# samples/questions.txt: "ids | question | expected answer" lines; "system: TEXT" sets
# the system prompt of the lines after it.
trim() { local s=$1; s=${s#"${s%%[! ]*}"}; echo "${s%"${s##*[! ]}"}"; }
FIRST_IDS="" FIRST_QUESTION="" SYSTEM="" ASKED=0 RIGHT=0
while IFS= read -r line; do
  [[ -z ${line// } || $line == \#* ]] && continue
  if [[ $line == system:* ]]; then SYSTEM=$(trim "${line#system:}"); continue; fi
  IFS='|' read -r ids question expected <<<"$line"
  ids=$(trim "$ids") question=$(trim "$question") expected=$(trim "$expected")
  [[ -z $FIRST_IDS ]] && FIRST_IDS=$ids FIRST_QUESTION=$question
  printf '\nQ: %s\n   passages: %s\n' "$question" "$ids"
  answer=$(bs ask "--system=$SYSTEM" "--passage=$ids" "--max_new_tokens=$MAX_NEW_TOKENS" \
           "$question") || die "ask failed"
  printf 'A: %s\n' "$answer"
  if [[ -n $expected ]]; then
    ((ASKED += 1))
    if [[ $(trim "$answer") == "$expected" ]]; then ((RIGHT += 1)); echo "   correct (expected: $expected)"
    else echo "   WRONG (expected: $expected)"; fi
  fi
done <samples/questions.txt
((ASKED)) && printf '\n%d of %d sample answers correct.\n' "$RIGHT" "$ASKED"

section "TTFT: the first question with Block-Attention vs with full prefill"
ask_json() { bs ask --json "--system=$SYSTEM" "--mode=$1" "--passage=$FIRST_IDS" "--max_new_tokens=$MAX_NEW_TOKENS" "$FIRST_QUESTION"; }
BLOCK_JSON=$(ask_json block) || die "ask failed"
FULL_JSON=$(ask_json full) || die "ask failed"
python3 - "$BLOCK_JSON" "$FULL_JSON" <<'EOF'
import json, sys
rows = [("block", json.loads(sys.argv[1])), ("full", json.loads(sys.argv[2]))]
print(f"{'mode':6} {'TTFT ms':>9} {'reused':>7} {'computed':>9} {'FLOPs to 1st token':>19}  answer")
for mode, r in rows:
    s = r["summary"]
    text = r["text"].replace("\n", " ")[:40]
    print(f"{mode:6} {s.get('ttft_ms', 0):9.2f} {int(s.get('tokens_reused', 0)):7d} "
          f"{int(s.get('tokens_computed', 0)):9d} {float(s.get('flops_to_first_token', 0)):19.3g}  {text!r}")
b, f = rows[0][1]["summary"], rows[1][1]["summary"]
if f.get("ttft_ms"):
    print(f"Block-Attention TTFT is {100 * (1 - b['ttft_ms'] / f['ttft_ms']):.1f}% lower; "
          f"FLOPs to first token {100 * (1 - float(b['flops_to_first_token']) / float(f['flops_to_first_token'])):.1f}% lower.")
print("Same greedy answer in both modes:" , rows[0][1]["token_ids"] == rows[1][1]["token_ids"],
      "(they may differ: Block-Attention changes what the passages' tokens see)")
EOF

section "Router stats"
bs stats || die "stats failed"

shutdown || exit 1
echo
echo "Done."
