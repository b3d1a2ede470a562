# Stand-in for nixpkgs' configuration of Google Compute Engine guests: it
# marks the system, for tests to see it was imported.
{ ... }:
{
  environment.etc."nixos-stub/virtualisation/google-compute-config".text = "imported\n";
}
