{ lib, ... }:
let
  inherit (lib) mkOption types;

  # Like NixOS' unitOption: repeated definitions must be equal, unless they
  # are lists (repeatable directives), which are concatenated.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge = loc: defs:
      if builtins.isList (builtins.head defs).value then
        lib.concatMap (def:
          if builtins.isList def.value then def.value
          else throw "The definitions for systemd unit options should be either all lists, representing repeatable options, or all non-lists, but for the option ${lib.showOption loc}, the definitions are a mix of list and non-list${lib.options.showDefs defs}") defs
      else lib.mergeEqualOption loc defs;
  };

  listOfStr = description: mkOption {
    type = types.listOf types.str;
    default = [ ];
    inherit description;
  };

  unitOptions = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = "Whether the unit is generated.";
    };
    description = mkOption {
      type = types.str;
      default = "";
      description = "Description of this unit.";
    };
    wantedBy = listOfStr "Units that want this unit.";
    requiredBy = listOfStr "Units that require this unit.";
    after = listOfStr "Units started before this one.";
    before = listOfStr "Units started after this one.";
    wants = listOfStr "Units wanted by this one.";
    requires = listOfStr "Units required by this one.";
    bindsTo = listOfStr "Units this one is bound to.";
    partOf = listOfStr "Units this one is part of.";
    unitConfig = mkOption {
      type = types.attrsOf unitOption;
      default = { };
      description = "Entries for the [Unit] section.";
    };
  };

  serviceOptions = {
    options = unitOptions // {
      path = mkOption {
        type = types.listOf (types.oneOf [ types.package types.str ]);
        default = [ ];
        description = "Packages added to the service's PATH.";
      };
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
        default = { };
        description = "Environment variables of the service.";
      };
      script = mkOption {
        type = types.lines;
        default = "";
        description = "Shell commands executed as the service's main process.";
      };
      preStart = mkOption {
        type = types.lines;
        default = "";
        description = "Shell commands executed before the main process.";
      };
      postStart = mkOption {
        type = types.lines;
        default = "";
        description = "Shell commands executed after the main process started.";
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
        description = "Entries for the [Service] section.";
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to restart the service when it changed.";
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
        description = "Values whose change restarts the service.";
      };
      reloadTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
        description = "Values whose change reloads the service.";
      };
      reloadIfChanged = mkOption {
        type = types.bool;
        default = false;
        description = "Whether to reload the service instead of restarting it when it changed.";
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
        description = "Whether a changed service is stopped before activation and started after it (else restarted).";
      };
    };
  };

  pathOptions = {
    options = unitOptions // {
      pathConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
        description = "Entries for the [Path] section.";
      };
    };
  };
in
{
  options.systemd = {
    services = mkOption {
      type = types.attrsOf (types.submodule serviceOptions);
      default = { };
      description = "Definition of systemd service units.";
    };
    paths = mkOption {
      type = types.attrsOf (types.submodule pathOptions);
      default = { };
      description = "Definition of systemd path units.";
    };
  };
}
