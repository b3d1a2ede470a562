# targetEnv "libvirtd": a virtual machine this tool makes through libvirt
# (src/backend/libvirtd.rs). The options have the names, types and
# defaults of the nixops-libvirtd plugin, so its networks evaluate
# unchanged; `networks` also takes user-mode interfaces (ours, see
# docs/virtual-machines.md).
{
  module = { config, lib, options, pkgs, ... }:
    let
      inherit (lib) mkOption types mkIf mkDefault mkOverride;
      cfg = config.deployment.libvirtd;
      # A user-mode interface: the guest's SSH port forwarded to an address
      # and port of the host (libvirt's <interface type='user'>).
      userNetwork = types.submodule {
        options = {
          type = mkOption { type = types.enum [ "user" ]; description = "User-mode networking (QEMU's own, or passt): no bridge, no address of the host's networks."; };
          hostAddress = mkOption { type = types.str; default = "127.0.0.1"; description = "Address of the host the guest's SSH port is forwarded from."; };
          hostPort = mkOption { type = types.nullOr types.port; default = null; description = "Port of the host forwarded to the guest's port 22; null: a free one, chosen when the machine is made and kept in state."; };
        };
      };
      isLibvirtd = config.deployment.targetEnv == "libvirtd";
      # The machine's client key, authorized for root (the physical spec
      # adds it): the base image is made with it, so the first login works.
      rootKeys = config.users.users.root.openssh.authorizedKeys.keys or [ ];
    in
    {
      options.deployment.libvirtd = {
        storagePool = mkOption { type = types.str; default = "default"; description = "libvirt storage pool the machine's disk is made in."; };
        URI = mkOption { type = types.str; default = "qemu:///system"; description = "libvirt connection URI (qemu+ssh://user@host/system for another hypervisor)."; };
        vcpu = mkOption { type = types.int; default = 1; description = "Virtual CPUs."; };
        memorySize = mkOption { type = types.int; default = 512; description = "Memory, in MiB."; };
        headless = mkOption { type = types.bool; default = false; description = "No graphical display (VNC)."; };
        baseImageSize = mkOption { type = types.int; default = 10; description = "Size of the base image, in GiB."; };
        baseImage = mkOption { type = types.nullOr types.path; default = null; description = "The disk image (a qcow2 file, or a directory holding nixos.qcow2) the machine's disk starts from; by default one made from the machine's configuration."; };
        networks = mkOption { type = types.listOf (types.either types.str userNetwork); default = [ "default" ]; description = "libvirt networks to attach the machine to (by name), or user-mode interfaces ({ type = \"user\"; hostPort; })."; };
        extraDevicesXML = mkOption { type = types.str; default = ""; description = "XML added at the end of the domain's <devices>."; };
        extraDomainXML = mkOption { type = types.str; default = ""; description = "XML added at the end of the domain."; };
        domainType = mkOption { type = types.str; default = "kvm"; description = "libvirt domain type (kvm, or qemu for emulation)."; };
        cmdline = mkOption { type = types.str; default = ""; description = "Kernel command line (with kernel)."; };
        initrd = mkOption { type = types.str; default = ""; description = "Initrd on the host (with kernel)."; };
        kernel = mkOption { type = types.str; default = ""; description = "Kernel on the host to boot directly."; };
      };

      config = mkIf isLibvirtd (lib.mkMerge [{
        deployment.libvirtd.baseImage = mkDefault (import (pkgs.path + "/nixos/lib/make-disk-image.nix") {
          name = "libvirtd-ssh-image";
          format = "qcow2";
          diskSize = cfg.baseImageSize * 1024;
          inherit config lib pkgs;
          contents = lib.optional (rootKeys != [ ]) {
            source = pkgs.writeText "authorized_keys.d-root" (lib.concatStringsSep "\n" rootKeys + "\n");
            target = "/etc/ssh/authorized_keys.d/root";
          };
        });
        nixpkgs.system = mkOverride 900 "x86_64-linux";
        fileSystems."/".device = "/dev/disk/by-label/nixos";
        boot.loader.grub.device = "/dev/vda";
        services.openssh.enable = true;
        deployment.hasFastConnection = true;
      }
        (lib.optionalAttrs (options ? boot.loader.timeout) { boot.loader.timeout = 0; })
        (lib.optionalAttrs (options ? services.openssh.startWhenNeeded) { services.openssh.startWhenNeeded = false; })
      ]);
    };
  info = [ "storagePool" "URI" "vcpu" "memorySize" "headless" "networks" "extraDevicesXML" "extraDomainXML" "domainType" "cmdline" "initrd" "kernel" ];
}
