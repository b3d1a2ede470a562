# Shared by every machine of the demo network.
{ config, lib, ... }: {
  services.openssh.enable = true;
  environment.etc."motd".text = "Welcome to ${config.networking.hostName}, deployed by nixops.";
}
