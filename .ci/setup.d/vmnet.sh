#!/usr/bin/env bash
# VM networking (src/drivers/net/, test/drivers/net*.test.ts, test/drivers/vmnet*.test.ts):
# nftables (the `nft` CLI, for our own NAT / port-forward / filter tables),
# iproute2 (taps, routes, `ip -6 neigh ... proxy` entries: the NDP proxy), and
# iputils-ping for the ping6 checks from another network namespace, python3 (its
# ipaddress module computes the monitor's address independently of ours).
# Idempotent and quiet on success.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends nftables iproute2 iputils-ping python3 >/dev/null
