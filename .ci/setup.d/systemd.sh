#!/usr/bin/env bash
# systemd unit tests (test/packaging/): systemd-analyze verify/security and
# systemd-socket-activate come with the systemd package. Idempotent and quiet.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v systemd-analyze >/dev/null || ! command -v systemd-socket-activate >/dev/null; then
  apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
