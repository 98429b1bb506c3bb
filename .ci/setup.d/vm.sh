#!/usr/bin/env bash
# Real microVM tests (test/drivers/qemu*, firecracker*, net*): qemu (TCG is enough),
# a static busybox for the guest, socat on the host (behind the guest API's guestfwd
# under user-mode networking, docs/guest-api.md), iproute2/iptables
# for tap devices and network namespaces, cpio/lz4 for images, gcc/libc6-dev for the static
# guest agent (guest/agent, snapshot restores), and a Debian cloud kernel downloaded with
# `apt-get download` (never installed) and unpacked into a cache kept between runs:
# $ALEPH_EDGE_VM_CACHE, default /var/cache/aleph-edge-test (the layout
# src/drivers/image/kernel.ts expects: kernel-<version>/boot/vmlinuz-<version>).
# Idempotent and quiet on success.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get install -y -qq --no-install-recommends \
  qemu-system-x86 busybox-static socat iproute2 iptables cpio lz4 zstd xz-utils gcc libc6-dev >/dev/null

cache="${ALEPH_EDGE_VM_CACHE:-/var/cache/aleph-edge-test}"
mkdir -p "$cache"
if compgen -G "$cache/kernel-*/boot/vmlinuz-*" >/dev/null; then
  exit 0 # cached
fi
meta=linux-image-cloud-amd64
image="$(apt-cache depends "$meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
if [ -z "$image" ]; then
  echo "vm.sh: cannot resolve $meta to a linux-image-<version> package" >&2
  exit 1
fi
version="${image#linux-image-}"
cd "$cache"
# _apt cannot write here; the download then runs unsandboxed as root (harmless warning).
apt-get download -q "$image" 2>&1 | grep -v 'unsandboxed' >&2 || true
deb="$(ls -1 "${image}"_*.deb | tail -n 1)"
rm -rf "kernel-$version.tmp"
dpkg-deb -x "$deb" "kernel-$version.tmp"
mv "kernel-$version.tmp" "kernel-$version"
test -f "kernel-$version/boot/vmlinuz-$version"
