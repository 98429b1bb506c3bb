#!/usr/bin/env bash
# Guest API tests (test/guestapi/): a real redis-server and redis-cli from Debian's
# `redis-server` package. The tests start their own server on a free port and temp
# folder, so nothing needs to run here. The package's own service is left as it is.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
