#!/bin/sh
# The runtime image from the cache, built first when absent (like the guest kernel):
#   cached.sh [--check] CACHE_DIR PACKAGE...   prints the image's path on its last line
#   --check: never build; exit 3 (saying so) when the image is not cached
# The cache key is the package set (sorted), this folder's build script and the
# timestamp: <CACHE_DIR>/runtime-<key>/runtime.squashfs (+ .packages, the versions
# it was built from). Built into a temporary folder that appears by rename, so a
# failed or concurrent build never leaves a half image under the key.
set -eu
check=
[ "${1:-}" = --check ] && { check=1; shift; }
cache=$1
shift
[ $# -gt 0 ] || { echo "usage: cached.sh CACHE_DIR PACKAGE..." >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
: "${SOURCE_DATE_EPOCH:=1704067200}" # 2024-01-01T00:00:00Z: any fixed value keeps builds comparable
export SOURCE_DATE_EPOCH
packages=$(printf '%s\n' "$@" | LC_ALL=C sort -u | tr '\n' ' ')
key=$( { echo "$packages"; echo "$SOURCE_DATE_EPOCH"; cat "$here/build.sh"; } | sha256sum | cut -c1-16)
dir="$cache/runtime-$key"
if [ ! -f "$dir/runtime.squashfs" ] && [ -n "$check" ]; then
  echo "no runtime image for ($packages) in $cache: run .ci/setup.d/runtime.sh or aleph-edge build-runtime" >&2
  exit 3
fi
if [ ! -f "$dir/runtime.squashfs" ]; then
  mkdir -p "$cache"
  tmp="$cache/runtime-$key.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  # shellcheck disable=SC2086 # one word per package
  "$here/build.sh" "$tmp/runtime.squashfs" $packages
  echo "$packages" > "$tmp/packages.list"
  mv "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # a concurrent build won: same key, same image
fi
echo "$dir/runtime.squashfs"
