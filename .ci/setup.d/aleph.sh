#!/usr/bin/env bash
# Programs from the Aleph network (test/programs/): bubblewrap sandboxes downloaded code (socat relays
# its port and guest API out of its own network namespace; pasta from passt gives programs with
# environment.internet a route out, test/chaos/isolation.test.ts)
# run by the process driver; unzip and unsquashfs unpack code archives; pebble-challtestsrv
# is the real DNS server of the custom-domain tests. Idempotent and quiet on success.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v socat >/dev/null || need+=(socat)
command -v pasta >/dev/null || need+=(passt)
command -v unzip >/dev/null || need+=(unzip)
command -v unsquashfs >/dev/null || need+=(squashfs-tools)
command -v pebble-challtestsrv >/dev/null || need+=(pebble)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
