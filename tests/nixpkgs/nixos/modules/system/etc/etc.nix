{ lib, ... }:
let
  inherit (lib) mkOption types;
  etcOpts = { name, ... }: {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether this /etc file should be generated.";
      };
      target = mkOption {
        type = types.str;
        default = name;
        description = "Name of the file relative to /etc.";
      };
      text = mkOption {
        type = types.nullOr types.lines;
        default = null;
        description = "Text of the file.";
      };
      mode = mkOption {
        type = types.str;
        default = "symlink";
        description = "Mode of the file (or `symlink`).";
      };
      user = mkOption {
        type = types.str;
        default = "+0";
        description = "Owner of the file (when copied).";
      };
      group = mkOption {
        type = types.str;
        default = "+0";
        description = "Group of the file (when copied).";
      };
    };
  };
in
{
  options.environment.etc = mkOption {
    type = types.attrsOf (types.submodule etcOpts);
    default = { };
    description = "Files in /etc.";
  };
}
