#!/usr/bin/env bash
# Node API tests (test/nodeapi/): python3 runs the diagnostic program under the
# process driver, and one name must resolve to both 127.0.0.1 and ::1 (the DNS
# checks want an IPv4 and an IPv6 answer; Debian's "localhost" may only have one).
# python3-psutil computes /about/usage/system the reference's way, to compare with;
# python3-aiohttp is the network monitor's HTTP client (test/nodeapi/monitor_client.py);
# chromium runs the index page in a real browser (driven by playwright-core).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
missing=()
command -v python3 >/dev/null || missing+=(python3)
/usr/bin/python3 -c 'import psutil' 2>/dev/null || missing+=(python3-psutil)
/usr/bin/python3 -c 'import aiohttp' 2>/dev/null || missing+=(python3-aiohttp)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NAME=dual.aleph-edge.test
grep -qE "^127\.0\.0\.1\s+.*\b${NAME}\b" /etc/hosts || echo "127.0.0.1 ${NAME}" >>/etc/hosts
grep -qE "^::1\s+.*\b${NAME}\b" /etc/hosts || echo "::1 ${NAME}" >>/etc/hosts
