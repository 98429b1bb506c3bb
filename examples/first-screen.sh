#!/bin/sh
# The README's first-screen examples, runnable as they are: start the node in one
# terminal (`npm install && npm start`), then run this from the repository root in
# another. EDGE=https://localhost:8443 and CA=certs/dev/internal/ca.crt by default
# (conf/dev.toml); SOCKET=run/aleph-edge.sock.
set -eu
EDGE=${EDGE:-https://localhost:8443}
CA=${CA:-certs/dev/internal/ca.crt}
SOCKET=${SOCKET:-run/aleph-edge.sock}
PORT=${EDGE##*:}
COUNTER=52de90754e35be72f259e354b07dabc2922fa569c5b1ad1405449b2ef598851f
ECHO=4414813a5b3222469346b69a5dff9ed1f28d0a9ecd71f98e72d60b3d799090f8
SSE=eb813719beb9cf49fe5a6651c517ae7844ba7e68b2e40e08caa046b9bdc9a8eb

echo "counter by path:";   curl -sS --cacert "$CA" "$EDGE/vm/$COUNTER/state/increment"; echo
# The same program by its base32 host label (curl resolves *.localhost to 127.0.0.1).
echo "counter by label:";  curl -sS --cacert "$CA" "https://klpja5kogw7hf4sz4nkla7nlykjc7jljywy22fafisns55myqupq.localhost:$PORT/state/increment"; echo
echo "asgi counter:";      curl -sS --cacert "$CA" "$EDGE/vm/d1bac9cc5bdae5b9a7e527d9a7c827cb1e1334747dda0ddf6c6557fd31de9ee1/state/increment"; echo
echo "node API:";          curl -sS --cacert "$CA" "$EDGE/about/usage/system"; echo
echo "echo:";              curl -sS --cacert "$CA" "$EDGE/vm/$ECHO/hello"; echo
echo "sse (3 s):";         timeout 3 curl -sS -N --cacert "$CA" "$EDGE/vm/$SSE/events" || true
node dist/src/cli.js vms --socket "$SOCKET"
