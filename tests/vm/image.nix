# The VM self-test's Nix side (tests/vm/selftest.sh), with the stand-in
# nixpkgs as <nixpkgs>: a disk image of the stand-in OS made as
# nixops-libvirtd makes a machine's base image (make-disk-image.nix, qcow2),
# and a second system to deploy into the VM.
{ marker ? "selftest" }:
let
  pkgs = import <nixpkgs> { };
  system = modules: (import <nixpkgs/nixos/lib/eval-config.nix> { inherit modules; }).config;
  base = system [ { networking.hostName = "vmtest"; } ];
in
{
  image = import <nixpkgs/nixos/lib/make-disk-image.nix> {
    inherit pkgs;
    inherit (pkgs) lib;
    config = base;
    name = "vm-selftest-image";
    format = "qcow2";
    diskSize = 1024;
    contents = [ {
      source = pkgs.writeText "image-marker" "made by make-disk-image\n";
      target = "/etc/image-marker";
      mode = "0640";
      user = "root";
      group = "root";
    } ];
  };
  deployed = (system [ {
    networking.hostName = "vmtest";
    environment.etc."vm-selftest".text = "${marker}\n";
  } ]).system.build.toplevel;
}
