# DigitalOcean droplets: targetEnv "droplet" (NixOps 2.0's plugin,
# nixops-digitalocean) and "digitalOcean" (NixOps 1.x's backend), whose
# options are the same under deployment.<targetEnv>.*: a function of the
# targetEnv. The options with the backend's names, types and defaults, and
# what its module sets on such a machine.
env:
{
  module = { config, lib, ... }:
    let inherit (lib) mkOption types; in
    {
      options.deployment.${env} = {
        authToken = mkOption { default = ""; type = types.str; description = "The API token ($DIGITAL_OCEAN_AUTH_TOKEN comes first)."; };
        region = mkOption { default = ""; type = types.str; description = "The droplet's region."; };
        size = mkOption { type = types.str; description = "The droplet's size identifier."; };
        enableIpv6 = mkOption { default = false; type = types.bool; description = "Whether the droplet has IPv6."; };
      };
      config = lib.mkIf (config.deployment.targetEnv == env) {
        nixpkgs.system = lib.mkOverride 900 "x86_64-linux";
        services.openssh.enable = true;
      };
    };

  info = [ "region" "size" ];
}
