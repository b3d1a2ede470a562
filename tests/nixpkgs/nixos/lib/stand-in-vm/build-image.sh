#!/usr/bin/env bash
# Builds one disk image of the stand-in OS (make-disk-image.nix): the shared
# tree of build-os.sh, the configuration's system (its closure registered in
# the image's Nix, the system profile pointing at it), `contents`, on an ext4
# root file system; with partition table "legacy" also a small FAT boot
# partition with syslinux (the kernel and initrd) and its MBR code, so that a
# BIOS boots it. Run by Nix outside its sandbox (__noChroot), with Debian's
# e2fsprogs, dosfstools, mtools, syslinux, fdisk, fakeroot and qemu-utils.
#
# Inputs (environment): out, os, toplevel, hostName, label, fsUUID,
# diskSizeMB ("auto" or a number), additionalSpaceMB, bootSizeMB,
# partitionTableType (legacy or none), installBootLoader (1 or empty), format,
# compress (1 or empty), filename, configFile, postVM, contentsPath (the
# file of `contents`); the closure files closure-*.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
: "${out:?}" "${os:?}" "${label:?}" "${format:?}" "${filename:?}" "${partitionTableType:?}"

die() { echo "make-disk-image (stand-in): $*" >&2; exit 1; }
mkdir -p "$out"
work=$PWD
root=$work/root
cp -a "$os/root" "$root"
chmod -R u+w "$root"
[[ -n ${hostName:-} ]] && printf '%s\n' "$hostName" > "$root/etc/hostname"

# contents: [{ source, target, mode?, user?, group? }], one a line:
# "source|target|mode|user|group".
owners=""
while IFS='|' read -r source target mode user group; do
  [[ -n $target ]] || continue
  dest=$root/${target#/}
  mkdir -p "$(dirname "$dest")"
  [[ -e $dest ]] && die "duplicate entry $target -> $source"
  if [[ -d $source ]]; then
    mkdir -p "$dest"
    cp -a --no-preserve=ownership "$source/." "$dest/"
    chmod -R u+w "$dest"
  else
    cp -L --no-preserve=ownership "$source" "$dest"
    chmod u+w "$dest"
  fi
  [[ -n $mode ]] && chmod "$mode" "$dest"
  [[ -n $user ]] && owners+="$user|$group|$dest"$'\n'
done < "${contentsPath:-/dev/null}"

# The system and the additional paths, with their closures, and their
# registration for the image's first boot.
: > "$root/nix-path-registration"
for c in "$work"/closure-*; do
  [[ -e $c ]] || continue
  cat "$c" >> "$root/nix-path-registration"
  while read -r p; do
    [[ $p == /nix/store/* && ! -e $root$p ]] && cp -a "$p" "$root$p"
    # Skip the rest of this entry: deriver, count, references.
    read -r _deriver; read -r n
    for ((i = 0; i < n; i++)); do read -r _; done
  done < "$c"
done
[[ -s $root/nix-path-registration ]] || rm -f "$root/nix-path-registration"
if [[ -n ${toplevel:-} ]]; then
  ln -s "$toplevel" "$root/nix/var/nix/profiles/system-1-link"
  ln -s system-1-link "$root/nix/var/nix/profiles/system"
fi
if [[ -n ${configFile:-} ]]; then
  mkdir -p "$root/etc/nixos"
  cp "$configFile" "$root/etc/nixos/configuration.nix"
fi
chmod -R u+w "$root/nix/store"

# Sizes, in MiB.
used=$(( ($(du -s --block-size=1M "$root" | cut -f1) * 12 + 9) / 10 + 16 ))
bootMB=0
if [[ $partitionTableType == legacy && -n ${installBootLoader:-} ]]; then
  bootMB=${bootSizeMB:-32}
fi
if [[ ${diskSizeMB:-auto} == auto ]]; then
  rootMB=$(( used + ${additionalSpaceMB:-512} ))
else
  # diskSize is the whole disk's: the partition table's MiB and the boot
  # partition come out of it.
  rootMB=$diskSizeMB
  [[ $partitionTableType == none ]] || rootMB=$(( rootMB - 1 - bootMB ))
  (( rootMB >= used )) || die "diskSize $diskSizeMB MiB is too small: the root file system needs $used MiB"
fi
raw=$work/disk.raw
if [[ $partitionTableType == none ]]; then
  rootOffset=0
  totalMB=$rootMB
else
  # The boot partition first, right after the partition table, so that its
  # offset stays small whatever the disk's size (syslinux takes no offset
  # past 4 GiB); the root partition, found by its label, after it.
  rootOffset=$(( (1 + bootMB) * 1024 * 1024 ))
  totalMB=$(( 1 + rootMB + bootMB ))
fi
truncate -s "${totalMB}M" "$raw"

if [[ $partitionTableType == legacy ]]; then
  rootSectors=$(( rootMB * 2048 ))
  {
    echo "label: dos"
    echo "label-id: 0x6e69786f"
    echo "start=$(( 2048 + bootMB * 2048 )), size=$rootSectors, type=83"
    (( bootMB == 0 )) || echo "start=2048, size=$(( bootMB * 2048 )), type=c, bootable"
  } | sfdisk --quiet "$raw"
fi

# The root file system, every file owned by root (fakeroot: the builder is
# not root).
# shellcheck disable=SC2016 # expanded by the inner shell
E2FSPROGS_FAKE_TIME=1 fakeroot -- bash -euc '
  root=$1 raw=$2 label=$3 uuid=$4 offset=$5 size=$6 owners=$7
  chown -R 0:0 "$root"
  chmod 0700 "$root/root"
  chmod 0600 "$root/etc/shadow"
  chmod 1777 "$root/tmp"
  while IFS="|" read -r user group path; do
    [[ -n $path ]] && chown "$user:$group" "$path"
  done <<< "$owners"
  mkfs.ext4 -q -F -L "$label" ${uuid:+-U "$uuid"} -E "offset=$offset,root_owner=0:0" -d "$root" "$raw" "${size}M"
' fakeroot-mkfs "$root" "$raw" "$label" "${fsUUID:-}" "$rootOffset" "$rootMB" "$owners"

if (( bootMB > 0 )); then
  bootOffset=$(( 2048 * 512 ))
  mkfs.fat -F 16 -n BOOT --offset=2048 "$raw" $(( bootMB * 1024 )) >/dev/null
  cat > "$work/syslinux.cfg" <<CFG
DEFAULT nixos
PROMPT 0
TIMEOUT 0
LABEL nixos
  KERNEL /kernel
  APPEND initrd=/initrd root=LABEL=$label console=ttyS0 quiet loglevel=4
CFG
  export MTOOLS_SKIP_CHECK=1
  mcopy -i "$raw@@$bootOffset" "$os/kernel" "$os/initrd" "$work/syslinux.cfg" ::/
  syslinux --offset "$bootOffset" --install "$raw"
  dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
fi

if [[ -n ${postVM:-} ]]; then
  diskImage=$raw
  export diskImage
  (cd "$work" && eval "$postVM")
fi

if [[ $format == raw ]]; then
  mv "$raw" "$out/$filename"
else
  qemu-img convert -f raw -O "$format" ${compress:+-c} "$raw" "$out/$filename"
  rm -f "$raw"
fi
# Direct kernel boot (libvirt's <kernel>, <initrd>, <cmdline>) as well.
ln -s "$os/kernel" "$out/kernel"
ln -s "$os/initrd" "$out/initrd"
printf 'root=LABEL=%s console=ttyS0 quiet loglevel=4\n' "$label" > "$out/cmdline"
