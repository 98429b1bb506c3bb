#!/usr/bin/env bash
# The Debian 12 Python runtime the VM end-to-end tests boot (test/e2e/aleph-vm*):
# mmdebstrap from the machine's apt sources, squashfs-tools, e2fsprogs for volume
# images. Built once into $ALEPH_EDGE_VM_CACHE (default /var/cache/aleph-edge-test,
# beside the kernel) by guest/runtime/cached.sh, the same script and key as
# `aleph-edge build-runtime`; about 1.5 min on 2 cores, nothing once cached.
# Idempotent and quiet on success.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cache="${ALEPH_EDGE_VM_CACHE:-/var/cache/aleph-edge-test}"
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! image=$(guest/runtime/cached.sh "$cache" python3 python3-fastapi python3-pydantic python3-aiohttp 2>"$log" | tail -n 1); then
  cat "$log" >&2
  exit 1
fi
took=$(( $(date +%s) - start ))
[ "$took" -gt 5 ] && echo "runtime.sh: built $image in ${took}s"
test -f "$image"
