# The stand-in's nixos/lib/make-disk-image.nix: nixpkgs' calling convention
# (the same arguments and defaults, `$out/nixos.<format>`), making a disk
# image of the stand-in OS that a VM boots (docs/virtual-machines.md):
# Debian's cloud kernel and an initrd that loads the virtio drivers, an ext4
# root file system labelled `label` with busybox init, Debian's sshd and Nix,
# the configuration's system installed (its closure registered on first
# boot, the system profile pointing at it) and `contents` grafted in. With
# partitionTableType "legacy" (the default) a BIOS boots it: an MBR with
# syslinux's boot code, a small FAT partition from 1 MiB with syslinux, the
# kernel and the initrd (first, so that syslinux finds it within 4 GiB on a
# disk of any size), then the root partition (partition 1, as nixpkgs').
# `$out/kernel`, `$out/initrd` and `$out/cmdline` are for direct kernel boot.
#
# The files of the OS (kernel, initrd, binaries) are one derivation shared by
# every image (`passthru.os`). Both are built from this machine's Debian
# packages, outside Nix's build sandbox (`__noChroot`: Nix must run with
# `sandbox = relaxed`, as scripts/offline-nix.sh sets it).
#
# Not supported by the stand-in: partition tables other than legacy and
# none, file systems other than ext4, EFI, onlyNixStore, channels
# (copyChannel is accepted and ignored).
{ pkgs
, lib
, config
, diskSize ? "auto"
, additionalSpace ? "512M"
, bootSize ? "32M"
, contents ? [ ]
, partitionTableType ? "legacy"
, installBootLoader ? true
, touchEFIVars ? false
, OVMF ? null
, efiFirmware ? null
, efiVariables ? null
, fsType ? "ext4"
, label ? if onlyNixStore then "nix-store" else "nixos"
, configFile ? null
, postVM ? ""
, memSize ? 1024
, onlyNixStore ? false
, name ? "nixos-disk-image"
, format ? "raw"
, deterministic ? true
, rootGPUID ? "5d1b3a6e-0c42-4f7e-9a51-3c2b8e7d4f10"
, rootFSUID ? (if fsType == "ext4" then rootGPUID else null)
, copyChannel ? true
, additionalPaths ? [ ]
}:
let
  supported = what: value: allowed:
    if builtins.elem value allowed then value
    else throw "make-disk-image (stand-in): ${what} ${builtins.toJSON value} is not supported (only ${builtins.toJSON allowed})";

  format' = if format == "qcow2-compressed" then "qcow2" else format;
  filename = "nixos." + ({ qcow2 = "qcow2"; vdi = "vdi"; vpc = "vhd"; raw = "img"; }.${format'} or format');

  # "512M", "1G", 1024 (MiB) -> MiB
  toMiB = s:
    if builtins.isInt s then s
    else
      let
        m = builtins.match "([0-9]+)([KMGT]?)i?B?" s;
        n = lib.toInt (builtins.elemAt m 0);
        unit = builtins.elemAt m 1;
      in
      if m == null then throw "make-disk-image (stand-in): cannot read the size ${s}"
      else if unit == "K" then (n + 1023) / 1024
      else if unit == "G" then n * 1024
      else if unit == "T" then n * 1024 * 1024
      else n;

  os = import ./stand-in-vm/os.nix { inherit pkgs; };

  toplevel = if onlyNixStore then null else config.system.build.toplevel;
  rootPaths = lib.optional (toplevel != null) toplevel ++ additionalPaths;

  contentsLines = lib.concatMapStrings (c:
    lib.concatStringsSep "|" [
      "${c.source}"
      c.target
      (c.mode or "")
      (c.user or "")
      (c.group or "")
    ] + "\n") contents;

  image = derivation ({
    inherit name;
    system = pkgs.system;
    builder = "/bin/bash";
    args = [ ./stand-in-vm/build-image.sh ];
    __noChroot = true;
    os = os;
    toplevel = if toplevel == null then "" else toplevel;
    hostName = if onlyNixStore then "" else config.networking.hostName or "";
    inherit label filename postVM;
    format = format';
    compress = if format == "qcow2-compressed" then "1" else "";
    partitionTableType = supported "partitionTableType" partitionTableType [ "legacy" "none" ];
    fsType = supported "fsType" fsType [ "ext4" ];
    installBootLoader = if installBootLoader && !onlyNixStore then "1" else "";
    fsUUID = if deterministic && rootFSUID != null then rootFSUID else "";
    diskSizeMB = if diskSize == "auto" then "auto" else toString (toMiB diskSize);
    additionalSpaceMB = toString (toMiB additionalSpace);
    bootSizeMB = toString (toMiB bootSize);
    configFile = if configFile == null then "" else configFile;
    contents = contentsLines;
    passAsFile = [ "contents" ];
    exportReferencesGraph = lib.concatLists (lib.imap0 (i: p: [ "closure-${toString i}" p ]) rootPaths);
  } // lib.optionalAttrs touchEFIVars (throw "make-disk-image (stand-in): EFI is not supported"));
in
assert lib.assertMsg (onlyNixStore -> contents == [ ] && configFile == null)
  "make-disk-image (stand-in): an onlyNixStore image takes no contents and no configFile";
image // { passthru = { inherit os; }; inherit os; }
