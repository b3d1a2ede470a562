# Stand-in for nixpkgs' VirtualBox guest image module: it marks the
# system, for tests to see it was imported.
{ ... }:
{
  environment.etc."nixos-stub/virtualisation/virtualbox-image".text = "imported\n";
}
