# Same interface as nixpkgs' nixos/default.nix.
{ configuration ? import <nixos-config>
, system ? builtins.currentSystem
}:
let
  eval = import ./lib/eval-config.nix {
    inherit system;
    modules = [ configuration ];
  };
in
{
  inherit (eval) pkgs config options;
  system = eval.config.system.build.toplevel;
}
