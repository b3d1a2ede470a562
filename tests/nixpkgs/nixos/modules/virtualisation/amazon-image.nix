# The stand-in's nixos/modules/virtualisation/amazon-image.nix: what NixOS
# configures for an EC2 instance, reduced to a mark a test can see. NixOps'
# AWS plugin (and this tool, for an adopted EC2 machine) imports it through
# the physical spec; it declares the options of NixOS' module that
# networks set (ec2.hvm, ec2.efi), and puts the instance the spec names
# into /etc.
{ config, lib, ... }:
let inherit (lib) mkOption types; in
{
  options.ec2 = {
    hvm = mkOption {
      type = types.bool;
      default = true;
      description = "Whether the instance is an HVM one (NixOS no longer builds others).";
    };
    efi = mkOption {
      type = types.bool;
      default = false;
      description = "Whether the instance boots with EFI.";
    };
  };
  config.environment.etc."amazon-image".text =
    "amazon-image.nix (hvm ${lib.boolToString config.ec2.hvm}) on instance ${config.deployment.ec2.instanceId or "unknown"}\n";
}
