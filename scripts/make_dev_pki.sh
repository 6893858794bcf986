#!/usr/bin/env bash
# Writes a throwaway PKI for running BlockServe with mutual TLS outside a cluster (the
# demo, a laptop, a cluster without cert-manager): a CA and one certificate per role,
# each with the role's identity as a URI SAN (spiffe://<trust domain>/<role>, what
# services check of each other) and localhost / 127.0.0.1 (what a client of the router
# checks), plus a client token and the router's tenants file holding only its SHA-256.
#
#   scripts/make_dev_pki.sh DIR [--days N] [--trust_domain D] [--dns NAME]...
#
# DIR gets ca.pem, ca.key, <role>.pem and <role>.key for router, prefill, decoder and
# encoder, token (the client's bearer token, mode 600) and tenants.json (tenant "demo").
# Keys are EC P-256. Nothing here is fit for production: the CA key sits next to the
# certificates. Needs the openssl command (Debian package openssl).
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
DIR="" DAYS=2 TRUST_DOMAIN=blockserve DNS=(localhost)
while (($#)); do
  case "$1" in
    --days) DAYS="${2:?--days needs a number}"; shift 2 ;;
    --trust_domain) TRUST_DOMAIN="${2:?--trust_domain needs a name}"; shift 2 ;;
    --dns) DNS+=("${2:?--dns needs a name}"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "make_dev_pki: unknown flag $1" >&2; usage >&2; exit 2 ;;
    *) [[ -z $DIR ]] || { echo "make_dev_pki: one DIR only" >&2; exit 2; }; DIR=$1; shift ;;
  esac
done
[[ -n $DIR ]] || { usage >&2; exit 2; }
command -v openssl >/dev/null || { echo "make_dev_pki: needs openssl (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$DIR"
umask 077

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$DAYS" \
  -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -subj "/CN=blockserve-dev-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null

SANS="IP:127.0.0.1"
for d in "${DNS[@]}"; do SANS="$SANS,DNS:$d"; done
for role in router prefill decoder encoder; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$DIR/$role.key" -out "$DIR/$role.csr" -subj "/CN=blockserve-$role" 2>/dev/null
  printf 'subjectAltName=URI:spiffe://%s/%s,%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' \
    "$TRUST_DOMAIN" "$role" "$SANS" >"$DIR/$role.ext"
  openssl x509 -req -in "$DIR/$role.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days "$DAYS" -extfile "$DIR/$role.ext" -out "$DIR/$role.pem" 2>/dev/null
  rm -f "$DIR/$role.csr" "$DIR/$role.ext"
done
rm -f "$DIR/ca.srl"

openssl rand -hex 32 >"$DIR/token"
HASH=$(tr -d '\n' <"$DIR/token" | openssl dgst -sha256 -r | cut -d' ' -f1)
cat >"$DIR/tenants.json" <<JSON
{"tenants": [{"name": "demo", "token_sha256": ["$HASH"]}]}
JSON
chmod 644 "$DIR"/*.pem "$DIR/tenants.json"
echo "make_dev_pki: CA, certificates for router, prefill, decoder, encoder, a token and tenants.json in $DIR"
