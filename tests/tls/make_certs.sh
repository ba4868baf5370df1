#!/usr/bin/env bash
# Makes throw-away certificates for TLS tests, with openssl:
#   tests/tls/make_certs.sh DIR [CLIENT_CN...]
# DIR gets ca.pem/ca.key (a test CA), server.pem/server.key (signed by it,
# for localhost, 127.0.0.1 and ::1), one client-<CN>.pem/.key per CLIENT_CN
# (CN=<CN>, signed by the CA: for the EXTERNAL mechanism), and other-ca.pem,
# a second CA that signed nothing here (the "wrong CA"). EC P-256 keys: fast.
# Files are readable by all (a test broker runs as user rabbitmq): test keys only.
set -euo pipefail
dir=$1; shift
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {   # ca NAME CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2/O=tern tests" -days 2 -sha256 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$1.pem" 2>/dev/null
}

signed() {   # signed NAME CN EXTENSIONS
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2/O=tern tests" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "tern test CA"
ca other-ca "another CA"
signed server localhost "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
for cn in "$@"; do
  signed "client-$cn" "$cn" "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth"
done
chmod a+r ./*.pem ./*.key
