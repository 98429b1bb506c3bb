#!/usr/bin/env bash
# The ASGI server (guest/aleph_asgi) and ASGI programs under the process driver:
# Debian's python3 (3.11) runs the server's unittest suite (test/guest/python.test.ts),
# and python3-fastapi lets a FastAPI program from the network run in the sandbox
# (test/programs/aleph-asgi.test.ts). The differential suite (test/asgi-parity/)
# serves FastAPI, Starlette and Django apps by aleph_asgi and by uvicorn: uvicorn,
# wsproto (its WebSocket protocol), python-multipart (FastAPI uploads) and Django.
# Idempotent and quiet on success.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
[ -x /usr/bin/python3 ] || need+=(python3)
for pair in fastapi:python3-fastapi starlette:python3-starlette uvicorn:python3-uvicorn wsproto:python3-wsproto \
            multipart:python3-multipart django:python3-django; do
  /usr/bin/python3 -c "import ${pair%%:*}" 2>/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
