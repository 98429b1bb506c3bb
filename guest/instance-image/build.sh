#!/bin/sh
# Builds a small bootable Debian 12 (bookworm) disk image for instance tests:
#   build.sh OUT.qcow2
# One MBR partition (ext4, label rootfs) holding a minimal Debian with the cloud
# kernel, cloud-init (NoCloud only), openssh-server and qemu-guest-agent; GRUB
# (BIOS) in the MBR gap, so qemu boots it from the image like a real Aleph
# instance image, with no direct kernel boot. No loop device or mount: the file
# system is filled with `mkfs.ext4 -d` at the partition's offset, and GRUB's
# boot.img + core.img are written to the first sectors (core.img at sector 1 is
# where boot.img looks by default and its blocklist expects the rest next).
# Packages come from the machine's apt sources. Runs as root (mmdebstrap
# --mode=root); needs mmdebstrap, e2fsprogs, fdisk (sfdisk), grub-pc-bin,
# qemu-utils. SOURCE_DATE_EPOCH (set by the caller) fixes timestamps.
set -eu
out=$1
: "${SOURCE_DATE_EPOCH:?SOURCE_DATE_EPOCH must be set (reproducible timestamps)}"
export SOURCE_DATE_EPOCH

sources=
[ -s /etc/apt/sources.list ] && grep -qE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list && sources=/etc/apt/sources.list
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sources="$sources $f"
done
[ -n "$sources" ] || { echo "build.sh: no apt sources configured on this machine" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/aleph-instance-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
packages=linux-image-cloud-amd64,initramfs-tools,systemd-sysv,udev,kmod,dbus,cloud-init,openssh-server,qemu-guest-agent,ifupdown,isc-dhcp-client,iproute2,netbase,sudo,ca-certificates

# dbus: systemd-logind needs it, and logind is what powers the VM off on the ACPI
# power button (the node stops instances that way).
# Only the NoCloud source: probing every cloud's metadata service costs minutes under TCG;
# and one host key type (RSA key generation is slow there too).
# shellcheck disable=SC2086 # $sources is a list of files
mmdebstrap --quiet --mode=root --variant=minbase --include="$packages" \
  --aptopt='Acquire::Retries "3"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old' \
  --customize-hook='rm -f "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/var/cache/ldconfig/aux-cache "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id "$1"/etc/ssh/ssh_host_*' \
  --customize-hook=': > "$1"/etc/machine-id; echo debian > "$1"/etc/hostname' \
  --customize-hook='printf "/dev/vda1 / ext4 rw,errors=remount-ro 0 1\n" > "$1"/etc/fstab' \
  --customize-hook='printf "datasource_list: [ NoCloud, None ]\nssh_genkeytypes: [ ed25519 ]\n" > "$1"/etc/cloud/cloud.cfg.d/90_aleph_nocloud.cfg' \
  --customize-hook='printf "auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n" > "$1"/etc/network/interfaces' \
  --customize-hook='chroot "$1" sh -c "find /usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +; python3 -m compileall -q -f -j 1 --invalidation-mode unchecked-hash /usr/lib/python3 /usr/lib/python3.11 >/dev/null"' \
  bookworm "$root" $sources

chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' | LC_ALL=C sort > "$work/packages.txt"

# GRUB: its modules in the image, a config naming this image's kernel and initrd.
# net.ifnames=0: the NIC is eth0, the name the node's network-config (the reference's
# shape: eth0 matched by the virtio driver) gives to cloud-init's ifupdown renderer.
kernel=$(cd "$root/boot" && ls vmlinuz-* | head -n 1)
initrd=$(cd "$root/boot" && ls initrd.img-* | head -n 1)
mkdir -p "$root/boot/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$root/boot/grub/i386-pc/"
cat > "$root/boot/grub/grub.cfg" <<CFG
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry 'Debian GNU/Linux 12' {
  linux /boot/$kernel root=/dev/vda1 ro net.ifnames=0 console=tty0 console=ttyS0,115200n8
  initrd /boot/$initrd
}
CFG

# Disk: 1 MiB for the MBR and GRUB's core, then the ext4 partition.
size_mib=2048
raw="$work/disk.raw"
truncate -s "${size_mib}M" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk --quiet "$raw"
env -u SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L rootfs -O ^orphan_file -U clear -E "offset=1048576,root_owner=0:0" -d "$root" "$raw" "$((size_mib - 1))M"
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 normal linux configfile echo serial terminal
[ "$(stat -c %s "$work/core.img")" -lt $((2047 * 512)) ] || { echo "build.sh: GRUB core image does not fit the MBR gap" >&2; exit 1; }
dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none

qemu-img convert -q -f raw -O qcow2 "$raw" "$work/disk.qcow2"
mv "$work/packages.txt" "$out.packages"
mv "$work/disk.qcow2" "$out"
