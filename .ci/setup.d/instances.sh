#!/usr/bin/env bash
# Instance tests (test/instances/*): qemu-img (qemu-utils) for instance disks,
# genisoimage for the cloud-init NoCloud drive (and isoinfo to read it back,
# python3-yaml to parse it as cloud-init does),
# openssh-client to log in to the VM, e2fsprogs for ephemeral and persistent volumes,
# squashfs-tools for the immutable volume the boot test serves, fdisk (sfdisk) + grub-pc-bin for the test
# image, and the image itself: a bootable Debian 12 disk (cloud kernel, cloud-init,
# openssh-server, qemu-guest-agent) built once with mmdebstrap by
# guest/instance-image/cached.sh into $ALEPH_EDGE_VM_CACHE (default
# /var/cache/aleph-edge-test), nothing once cached. Idempotent and quiet on success.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v genisoimage >/dev/null || need+=(genisoimage)
command -v ssh >/dev/null || need+=(openssh-client)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
[ -f /usr/lib/grub/i386-pc/boot.img ] || need+=(grub-pc-bin)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
python3 -c "import yaml" 2>/dev/null || need+=(python3-yaml)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cache="${ALEPH_EDGE_VM_CACHE:-/var/cache/aleph-edge-test}"
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! image=$(guest/instance-image/cached.sh "$cache" 2>"$log" | tail -n 1); then
  cat "$log" >&2
  exit 1
fi
took=$(( $(date +%s) - start ))
[ "$took" -gt 5 ] && echo "instances.sh: built $image in ${took}s"
test -f "$image"
