# The stand-in nixpkgs as a flake, with the outputs of nixpkgs' own flake
# that NixOps 2.0 and Colmena use: `lib` with `nixosSystem` (which calls
# nixos/lib/eval-config.nix as nixpkgs' flake does: system null unless
# given) and `legacyPackages.<system>`.
#
# Pure evaluation reads nothing outside the flake, so tests use a copy of
# this directory with the `lib` link dereferenced (tests/common/mod.rs).
{
  description = "Stand-in nixpkgs of the nixops tests";

  outputs = { self }:
    let
      lib = import ./lib;
      systems = [ "x86_64-linux" "aarch64-linux" "i686-linux" "riscv64-linux" ];
    in
    {
      lib = lib // {
        nixosSystem = args:
          import ./nixos/lib/eval-config.nix ({ lib = self.lib; system = null; } // args);
      };
      legacyPackages = lib.genAttrs systems (system: import ./. { inherit system; });
    };
}
