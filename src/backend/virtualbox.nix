# targetEnv "virtualbox": a local VirtualBox VM that NixOps' VirtualBox
# backend (NixOps 1.x, nixops-vbox) made. Its deployment.virtualbox.*
# options with the backend's names, types and defaults, and what its
# module sets on such a machine. The root disk's base image (a download the
# backend made to create the VM) is not given: the VM exists already.
{
  module = { config, lib, pkgs, ... }:
    let
      inherit (lib) mkOption types;
      cfg = config.deployment.virtualbox;
    in
    {
      options.deployment.virtualbox = {
        vmFlags = mkOption { default = [ ]; type = types.listOf types.str; description = "Further arguments of VBoxManage modifyvm."; };
        vcpu = mkOption { default = null; type = types.nullOr types.int; description = "The number of virtual CPUs (VirtualBox's default if null)."; };
        memorySize = mkOption { default = 512; type = types.int; description = "The VM's memory in MiB."; };
        headless = mkOption { default = false; description = "Whether the VM runs without a window."; };
        disks = mkOption {
          default = { };
          description = "The VM's disks; the root disk is disk1.";
          type = types.attrsOf (types.submodule {
            options = {
              port = mkOption { type = types.int; description = "The SATA port of the disk."; };
              size = mkOption { type = types.int; description = "The disk's size in MiB."; };
              baseImage = mkOption { default = null; type = types.nullOr types.path; description = "An image the disk is cloned from."; };
            };
          });
        };
        sharedFolders = mkOption {
          default = { };
          description = "Folders of the host shared with the VM.";
          type = types.attrsOf (types.submodule {
            options = {
              hostPath = mkOption { type = types.str; description = "The folder on the host."; };
              readOnly = mkOption { default = true; type = types.bool; description = "Whether the VM may only read it."; };
            };
          });
        };
      };

      config = lib.mkIf (config.deployment.targetEnv == "virtualbox") {
        nixpkgs.system = lib.mkOverride 900 "x86_64-linux";
        deployment.hasFastConnection = true;
        boot.initrd = lib.mkIf (cfg.sharedFolders != { }) {
          kernelModules = [ "vboxsf" ];
          extraUtilsCommands = ''
            cp -v ${pkgs.linuxPackages.virtualboxGuestAdditions}/bin/mount.vboxsf $out/bin/
          '';
        };
        deployment.virtualbox.disks.disk1 = {
          port = 0;
          size = lib.mkDefault 0;
        };
      };
    };

  info = [ "sharedFolders" ];
}
