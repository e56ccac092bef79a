#!/usr/bin/env bash
# Makes a local development CA and a server certificate for localhost / 127.0.0.1 / ::1, plus a
# client certificate for trying mutual TLS. Everything lands next to this script; private keys
# are git-ignored and never committed. Re-running replaces the files.
#
#   bash certs/make-dev-certs.sh            # EC P-256 keys (default)
#   KEY=rsa bash certs/make-dev-certs.sh    # RSA 2048 keys
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v openssl >/dev/null || { echo "openssl is needed (apt-get install openssl)" >&2; exit 1; }

DAYS="${DAYS:-825}"
case "${KEY:-ec}" in
  ec)  newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; } ;;
  rsa) newkey() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; } ;;
  *) echo "KEY must be ec or rsa" >&2; exit 2 ;;
esac

umask 077
newkey ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" -subj "/CN=tokengate development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

issue() {  # name, subject CN, extensions
  newkey "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$DAYS" -sha256 \
    -extfile <(printf '%s\n' "$3") -out "$1.pem" 2>/dev/null
  rm -f "$1.csr"
}
issue server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
issue client tokengate-client "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem

echo "made in $(pwd):"
echo "  ca.pem              trust this in clients:  curl --cacert certs/ca.pem https://127.0.0.1:8443/"
echo "  server.pem / .key   [tls] cert / key"
echo "  client.pem / .key   a client certificate signed by ca.pem (trusted by [tls] client_ca = this ca.pem;"
echo "                      from config/https.toml that is client_ca = \"../certs/ca.pem\")"
