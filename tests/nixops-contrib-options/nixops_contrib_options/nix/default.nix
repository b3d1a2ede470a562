# The options only: the tests' machines use neither, and their systems are
# what they would be with nixos-modules-contrib's implementation (which
# defines nothing when both are empty).
{
  config_exporters = { ... }: [ ];
  options = [
    ({ lib, ... }: {
      options.deployment.autoLuks = lib.mkOption {
        type = lib.types.attrsOf lib.types.attrs;
        default = { };
        description = "LUKS devices (declared only).";
      };
      options.deployment.autoRaid0 = lib.mkOption {
        type = lib.types.attrsOf lib.types.attrs;
        default = { };
        description = "RAID-0 volumes (declared only).";
      };
    })
  ];
  resources = { ... }: { };
}
