#!/usr/bin/env bash
# Creates a cluster CA and node certificates for TaskMaster's mutual TLS.
#   scripts/gen-certs.sh DIR [NODE...]      (default nodes: master worker)
# Writes DIR/ca.pem, DIR/ca.key and DIR/NODE.pem, DIR/NODE.key per node. Use
# a dedicated CA for the cluster: CAF checks the CA, not host names.
#   taskmasterd --role=master --tls-ca=DIR/ca.pem --tls-cert=DIR/master.pem --tls-key=DIR/master.key
#   taskmasterd --role=worker --tls-ca=DIR/ca.pem --tls-cert=DIR/worker.pem --tls-key=DIR/worker.key ...
set -euo pipefail
dir="${1:?usage: gen-certs.sh DIR [NODE...]}"
shift
nodes=("$@")
[[ ${#nodes[@]} -gt 0 ]] || nodes=(master worker)
mkdir -p "$dir"
umask 077
if [[ ! -f "$dir/ca.pem" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=TaskMaster cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
ext="$(mktemp)"
trap 'rm -f "$ext"' EXIT
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
for node in "${nodes[@]}"; do
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$dir/$node.key" \
    -out "$dir/$node.csr" -subj "/CN=$node" 2>/dev/null
  openssl x509 -req -in "$dir/$node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 825 -sha256 -extfile "$ext" -out "$dir/$node.pem" 2>/dev/null
  rm -f "$dir/$node.csr"
  echo "$dir/$node.pem"
done
