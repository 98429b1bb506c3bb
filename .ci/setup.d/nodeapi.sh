#!/usr/bin/env bash
# Node API tests (test/nodeapi/): python3 runs the diagnostic program under the
# process driver, and one name must resolve to both 127.0.0.1 and ::1 (the DNS
# checks want an IPv4 and an IPv6 answer; Debian's "localhost" may only have one).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
command -v python3 >/dev/null || apt-get install -y -qq --no-install-recommends python3 >/dev/null
NAME=dual.aleph-edge.test
grep -qE "^127\.0\.0\.1\s+.*\b${NAME}\b" /etc/hosts || echo "127.0.0.1 ${NAME}" >>/etc/hosts
grep -qE "^::1\s+.*\b${NAME}\b" /etc/hosts || echo "::1 ${NAME}" >>/etc/hosts
