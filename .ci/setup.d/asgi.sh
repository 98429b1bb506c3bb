#!/usr/bin/env bash
# The ASGI server (guest/aleph_asgi) and ASGI programs under the process driver:
# Debian's python3 (3.11) runs the server's unittest suite (test/guest/python.test.ts),
# and python3-fastapi lets a FastAPI program from the network run in the sandbox
# (test/programs/aleph-asgi.test.ts). Idempotent and quiet on success.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import fastapi' 2>/dev/null || need+=(python3-fastapi)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
