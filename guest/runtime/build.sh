#!/bin/sh
# Builds a Debian 12 (bookworm) runtime root filesystem as a squashfs image.
#   build.sh OUT.squashfs PACKAGE...
# Packages come from the machine's own apt sources (its sources.list and
# sources.list.d), so the build works wherever apt does. Reproducible for the same
# package versions: SOURCE_DATE_EPOCH (set by the caller) fixes every timestamp
# (mmdebstrap clamps mtimes to it; mksquashfs -all-time/-mkfs-time), files the
# install leaves that differ between runs (apt lists and caches, logs,
# machine-id, ld.so aux cache) are removed, and mksquashfs orders entries itself.
# Python byte code is compiled again as unchecked-hash .pyc: the clamped mtimes would
# make Debian's timestamp-checked .pyc stale, and every boot would recompile all of
# FastAPI into the tmpfs overlay (about 50 s under TCG).
# Runs as root (mmdebstrap --mode=root); needs mmdebstrap and squashfs-tools.
set -eu
out=$1
shift
[ $# -gt 0 ] || { echo "usage: build.sh OUT.squashfs PACKAGE..." >&2; exit 2; }
: "${SOURCE_DATE_EPOCH:?SOURCE_DATE_EPOCH must be set (reproducible timestamps)}"
export SOURCE_DATE_EPOCH

sources=
[ -s /etc/apt/sources.list ] && grep -qE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list && sources=/etc/apt/sources.list
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sources="$sources $f"
done
[ -n "$sources" ] || { echo "build.sh: no apt sources configured on this machine" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/aleph-runtime.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
packages=$(echo "$@" | tr ' ' ',')

# shellcheck disable=SC2086 # $sources is a list of files
mmdebstrap --quiet --mode=root --variant=minbase --include="$packages" \
  --aptopt='Acquire::Retries "3"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old' \
  --customize-hook='rm -f "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/var/cache/ldconfig/aux-cache "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id' \
  --customize-hook=': > "$1"/etc/machine-id; echo aleph > "$1"/etc/hostname' \
  --customize-hook='mkdir -p "$1"/opt/code "$1"/opt/aleph-guest "$1"/etc/aleph' \
  --customize-hook='chroot "$1" sh -c "find /usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +; python3 -m compileall -q -f -j 1 --invalidation-mode unchecked-hash /usr/lib/python3 /usr/lib/python3.11 >/dev/null"' \
  bookworm "$root" $sources

# The package versions, for the manifest (what the image was built from).
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' | LC_ALL=C sort > "$work/packages.txt"

# mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times: given explicitly here.
env -u SOURCE_DATE_EPOCH mksquashfs "$root" "$work/runtime.squashfs" -noappend -quiet -no-progress -comp zstd \
  -all-time "$SOURCE_DATE_EPOCH" -mkfs-time "$SOURCE_DATE_EPOCH" >/dev/null
mv "$work/packages.txt" "$out.packages"
mv "$work/runtime.squashfs" "$out"
