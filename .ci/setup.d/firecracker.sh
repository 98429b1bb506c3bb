#!/usr/bin/env bash
# The Firecracker fakes (test/fixtures/firecracker/): the fake firecracker opens its
# tap with TUNSETIFF through /usr/bin/python3 (as the jail uid, so a tap owned by
# another user fails as with the real one); the fake jailer makes the jail's device
# nodes with mknod (coreutils). iproute2 and busybox come from vm.sh; the Firecracker
# instance test's qemu-img, genisoimage (isoinfo) and e2fsprogs from instances.sh.
# Idempotent and quiet on success.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ ! -x /usr/bin/python3 ] || ! command -v mknod >/dev/null; then
  apt-get install -y -qq --no-install-recommends python3-minimal coreutils >/dev/null
fi
