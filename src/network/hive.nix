# The Colmena front end: evaluates a Colmena hive (a hive.nix file, or a
# flake's `colmena` output) with Colmena's semantics, into the same result as
# the NixOps front end in eval-machine-info.nix: evaluated nodes and the
# network's attributes. Called by eval-machine-info.nix only.
#
# Colmena's semantics, as this file follows them:
#   - `meta` (or `network`, Colmena's NixOps-compatible name; not both) holds
#     name, description, nixpkgs, nodeNixpkgs, specialArgs, nodeSpecialArgs,
#     machinesFile (Nix's remote builders for the deployer's build),
#     allowApplyAll; anything else there is an error.
#   - `defaults` is one module applied to every node; every other attribute is
#     a node: a module or a list of modules. A hive may be a function.
#   - Nodes are evaluated with the eval-config.nix of their package set
#     (`meta.nodeNixpkgs.<node>`, else `meta.nixpkgs`), that set's system,
#     overlays and config, and the special arguments `name`, `nodes`,
#     `meta.specialArgs` and `meta.nodeSpecialArgs.<node>`.
#   - A node's modules are Colmena's list, in Colmena's order: the package
#     set's module, the tool's (`nodeModules`: Colmena's own modules first,
#     see colmena-compat.nix), `defaults`, the node's. None is wrapped in
#     another: the module system orders definitions by how deep a module
#     is imported, then by position, and list options (systemPackages...)
#     keep that order, so a wrapper would change the system.
#   - No networking.hostName default (Colmena sets none); targetHost defaults
#     to the node's name.
{ rawHive
, where                 # for messages: the file, or flake#output
, hermetic              # a flake: no <nixpkgs>, no uninitialised package sets
, system
, args
, nodeModules           # name -> the tool's modules for that node (Colmena's place for its own)
}:
let
  inherit (builtins) attrNames elem filter isAttrs isFunction isList isPath throw;

  hive =
    let h = if isFunction rawHive || (isAttrs rawHive && rawHive ? __functor) then rawHive args else rawHive; in
    if isAttrs h then h
    else throw "${where}: a Colmena hive must be an attribute set (or a function returning one)";

  metaName =
    if hive ? meta && hive ? network then
      throw "${where}: a Colmena hive sets only one of `meta` and `network` (`network` is Colmena's NixOps-compatible name for `meta`)"
    else if hive ? network then "network" else "meta";
  userMeta = hive.${metaName} or { };
  metaDefaults = {
    name = "hive";
    description = "Unnamed NixOps network";
    nixpkgs = null;
    nodeNixpkgs = { };
    specialArgs = { };
    nodeSpecialArgs = { };
    machinesFile = null;
    allowApplyAll = true;
    # Ours: the outputs of Terraform/OpenTofu (or any command) for the nodes.
    inventory = null;
  };
  meta = metaDefaults // userMeta;

  # A package set as Colmena accepts one, and a nixpkgs flake as well.
  mkNixpkgs = what: p:
    let
      fail = kind: throw ''
        ${where}: ${what} is ${kind}, which a flake cannot use (it would need <nixpkgs> or the deployer's system).
        Give an imported package set, e.g. ${what} = import inputs.nixpkgs { system = "${system}"; };
        or the nixpkgs flake itself: ${what} = inputs.nixpkgs;'';
    in
    if isAttrs p && p ? legacyPackages then
      (p.legacyPackages.${system} or (throw "${where}: the flake given as ${what} has no legacyPackages.${system}"))
    else if isPath p || (isAttrs p && p ? outPath) then
      (if hermetic then fail "a path to nixpkgs" else mkNixpkgs what (import p))
    else if isFunction p then
      (if hermetic then fail "the nixpkgs function (not yet called)" else p { overlays = [ ]; })
    else if isAttrs p && p ? lib && p ? path then p
    else throw "${where}: ${what} must be a path to nixpkgs, the nixpkgs function, an imported package set or a nixpkgs flake";

  nixpkgs =
    if meta.nixpkgs != null then mkNixpkgs "${metaName}.nixpkgs" meta.nixpkgs
    else if hermetic then throw "${where}: ${metaName}.nixpkgs must be set in a flake's hive (there is no <nixpkgs>)"
    else mkNixpkgs "${metaName}.nixpkgs" <nixpkgs>;
  inherit (nixpkgs) lib;

  reserved = [ "defaults" "network" "meta" ];
  nodeNames = filter (n: !elem n reserved) (attrNames hive);
  configsFor = name: let c = hive.${name}; in if isList c then c else [ c ];

  evalNode = name:
    let
      npkgs =
        if meta.nodeNixpkgs ? ${name} then mkNixpkgs "${metaName}.nodeNixpkgs.${name}" meta.nodeNixpkgs.${name}
        else nixpkgs;
      evalConfig = import (npkgs.path + "/nixos/lib/eval-config.nix");
      pkgsConfig = npkgs.config or { };
      # The package set's overlays and config come before the node's own.
      # nixpkgs.config merges from NixOS 22.11 on; before, the node's own
      # replaces the package set's (Colmena's choice), with a warning
      # naming what is lost.
      packageSet = { config, lib, ... }:
        let
          merges = lib.versionAtLeast lib.version "22.11pre";
          kept = [ "doCheckByDefault" "warnings" "allowAliases" ] ++ attrNames config.nixpkgs.config;
          lost = filter (k: !elem k kept) (attrNames pkgsConfig);
        in
        {
          _file = "<nixops>/hive.nix, package set of node ‘${name}’";
          nixpkgs.overlays = lib.mkBefore (npkgs.overlays or [ ]);
          nixpkgs.config = (if merges then lib.mkBefore else lib.mkOptionDefault) pkgsConfig;
          warnings = lib.optional (!merges && lost != [ ])
            "The following Nixpkgs configuration keys set in meta.nixpkgs will be ignored: ${toString lost}";
        };
      evalArgs = {
        inherit (npkgs) system;
        modules = [ packageSet ] ++ nodeModules name ++ [ (hive.defaults or { }) ] ++ configsFor name;
        specialArgs = { inherit name nodes; } // meta.specialArgs // (meta.nodeSpecialArgs.${name} or { });
      };
    in
    # Messages name the hive as where the unwrapped modules come from
    # (NixOS 22.05 and later take that argument).
    evalConfig (evalArgs // lib.optionalAttrs (builtins.functionArgs evalConfig ? modulesLocation) { modulesLocation = where; });

  nodes = lib.genAttrs nodeNames evalNode;
in
{
  inherit nodes lib;
  # The package set of `meta.nixpkgs`, for `eval` and `repl`.
  pkgs = nixpkgs;
  description = meta.description;
  enableRollback = false;
  knownAttrs = map (a: "${metaName}.${a}") (attrNames metaDefaults);
  # Colmena refuses what its meta does not declare: so do we (NixOps'
  # unknown network attributes are only warned about).
  unknownAttrs = [ ];
  resources = { };
  allowApplyAll = meta.allowApplyAll;
  inherit (meta) machinesFile inventory;
  unsupported = map (a: "the hive's ${metaName}.${a}, which Colmena does not know (known: ${lib.concatStringsSep ", " (attrNames metaDefaults)})")
    (attrNames (removeAttrs userMeta (attrNames metaDefaults)));
}
