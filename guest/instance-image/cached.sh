#!/bin/sh
# The instance test image from the cache, built first when absent:
#   cached.sh [--check] CACHE_DIR      prints the image's path on its last line
#   --check: never build; exit 3 (saying so) when the image is not cached
# Key: this folder's build script and the timestamp:
# <CACHE_DIR>/instance-<key>/debian12.qcow2. Built into a temporary folder that
# appears by rename, so a failed or concurrent build never leaves a half image.
set -eu
check=
[ "${1:-}" = --check ] && { check=1; shift; }
cache=$1
here=$(cd "$(dirname "$0")" && pwd)
: "${SOURCE_DATE_EPOCH:=1704067200}"
export SOURCE_DATE_EPOCH
key=$( { echo "$SOURCE_DATE_EPOCH"; cat "$here/build.sh"; } | sha256sum | cut -c1-16)
dir="$cache/instance-$key"
if [ ! -f "$dir/debian12.qcow2" ] && [ -n "$check" ]; then
  echo "no instance test image in $cache: run .ci/setup.d/instances.sh" >&2
  exit 3
fi
if [ ! -f "$dir/debian12.qcow2" ]; then
  mkdir -p "$cache"
  tmp="$cache/instance-$key.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  "$here/build.sh" "$tmp/debian12.qcow2"
  mv "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
fi
echo "$dir/debian12.qcow2"
