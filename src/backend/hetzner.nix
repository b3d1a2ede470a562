# targetEnv "hetzner": a Hetzner dedicated server (Robot) that NixOps'
# Hetzner backend (NixOps 1.x, nixops-hetzner) installed NixOS on. Its
# deployment.hetzner.* options with the backend's names, types and
# defaults, and what its module sets on such a machine.
{
  module = { config, lib, ... }:
    let inherit (lib) mkOption types; in
    {
      options.deployment.hetzner = {
        mainIPv4 = mkOption { default = null; type = types.nullOr types.str; description = "The main IPv4 address of the server, by which Hetzner knows it."; };
        createSubAccount = mkOption { default = true; type = types.bool; description = "Whether NixOps made a Robot admin sub-account for the server."; };
        robotUser = mkOption { default = ""; type = types.nullOr types.str; description = "The Robot account's user (else $HETZNER_ROBOT_USER)."; };
        robotPass = mkOption { default = ""; type = types.nullOr types.str; description = "The Robot account's password (else $HETZNER_ROBOT_PASS)."; };
        partitions = mkOption {
          default = ''
            clearpart --all --initlabel --drives=sda,sdb

            part swap1 --recommended --label=swap1 --fstype=swap --ondisk=sda
            part swap2 --recommended --label=swap2 --fstype=swap --ondisk=sdb

            part raid.1 --grow --ondisk=sda
            part raid.2 --grow --ondisk=sdb

            raid / --level=1 --device=md0 --fstype=ext4 --label=root raid.1 raid.2
          '';
          type = types.lines;
          description = "The partitions and file systems of a new installation, in Anaconda's Kickstart format.";
        };
      };

      config = lib.mkIf (config.deployment.targetEnv == "hetzner") {
        nixpkgs.system = lib.mkOverride 900 "x86_64-linux";
        boot.loader.grub.version = 2;
        boot.loader.timeout = 1;
        services.openssh.enable = true;
        boot.blacklistedKernelModules = [ "nvidiafb" ];
        security.initialRootPassword = lib.mkDefault "!";
      };
    };

  info = [ "mainIPv4" ];
}
