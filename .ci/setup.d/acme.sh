#!/usr/bin/env bash
# ACME tests (test/tls/acme*): a real Pebble and pebble-challtestsrv from Debian's
# `pebble` package. The tests start them on free ports; they fail (not skip) without.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends pebble >/dev/null
command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null
