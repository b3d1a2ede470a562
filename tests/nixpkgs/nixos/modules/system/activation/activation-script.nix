{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.system.activationScripts = mkOption {
    type = types.attrsOf (types.either types.str (types.attrsOf types.unspecified));
    default = { };
    description = "Snippets run on activation (strings or `lib.stringAfter deps text`).";
  };
}
