# NixOS (up to 20.09) declares this; NixOps 2.0 sets it on every machine.
# The stand-in's module system always checks definitions.
{ lib, ... }:
{
  options.environment.checkConfigurationOptions = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = "Whether to check that every option defined is declared.";
  };
}
