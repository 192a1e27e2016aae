#!/usr/bin/env bash
# Makes a certificate authority and certificates signed by it, for tests, the
# demo and first deployments (production clusters usually issue them with
# their own PKI, e.g. cert-manager; craft only needs PEM files).
#
#   scripts/make_certs.sh DIR NAME[:SAN,SAN...] ...
#
# DIR/ca.pem and DIR/ca.key are made once and reused. For every NAME it writes
# DIR/NAME.pem and DIR/NAME.key: an ECDSA P-256 key and a certificate whose
# subjectAltName holds DNS:NAME and the extra SANs (an IP address becomes an
# IP SAN, anything else a DNS SAN). craft reads identities from DNS SANs: an
# agent's certificate names its node, a planner's its service name.
#
#   scripts/make_certs.sh certs craft-planner:localhost,127.0.0.1 node0 node1 admin
set -euo pipefail

if (($# < 2)); then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
dir="$1"
shift
mkdir -p "$dir"
days="${CRAFT_CERT_DAYS:-365}"

if [[ ! -f "$dir/ca.pem" || ! -f "$dir/ca.key" ]]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=craft test CA" -days "$days" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem"
fi

for spec in "$@"; do
  name="${spec%%:*}"
  extra=""
  [[ "$spec" == *:* ]] && extra="${spec#*:}"
  if [[ ! "$name" =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]]; then
    echo "make_certs.sh: '$name' is not a DNS name" >&2
    exit 2
  fi
  sans="DNS:$name"
  IFS=',' read -r -a extras <<< "$extra"
  for san in "${extras[@]}"; do
    [[ -z "$san" ]] && continue
    if [[ "$san" =~ ^[0-9.]+$ || "$san" == *:*:* ]]; then
      sans+=",IP:$san"
    else
      sans+=",DNS:$san"
    fi
  done
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key" 2>/dev/null
  openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$dir/$name.csr"
  ext="$(mktemp)"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$sans" > "$ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days "$days" -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$ext" "$dir/$name.csr"
  chmod 600 "$dir/$name.key"
done
