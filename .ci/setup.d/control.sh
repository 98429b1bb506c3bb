#!/usr/bin/env bash
# /control/* tests (test/control/): signatures made by an implementation independent of
# ours, with Debian's Python libraries (secp256k1/P-256, keccak, ed25519, base58).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
/usr/bin/python3 -c 'import ecdsa, Cryptodome, nacl, base58' 2>/dev/null ||
  apt-get install -y -qq --no-install-recommends python3 python3-ecdsa python3-pycryptodome python3-nacl python3-base58 >/dev/null
