# Evaluates a NixOps network: every machine through nixpkgs'
# nixos/lib/eval-config.nix, with NixOps' module arguments and defaults.
# Called by the tool with --arg/--argstr; see src/network/mod.rs.
{ networkExprsJSON        # JSON list of absolute network file paths
, args ? { }              # the deployment's arguments (set-args)
, uuid
, deploymentName
, includeJSON ? "null"    # JSON list of selectors of machines to instantiate (null: all)
, excludeJSON ? "[]"      # JSON list of selectors of machines not to instantiate
, system ? builtins.currentSystem
, optionMachine ? ""      # for `show-option`
, optionPathJSON ? "[]"
}:
let
  call = x: if builtins.isFunction x then x args else x;
  networkExprs = map (p: /. + p) (builtins.fromJSON networkExprsJSON);

  zipAttrs = sets: builtins.listToAttrs (map
    (name: { inherit name; value = builtins.catAttrs name sets; })
    (builtins.concatMap builtins.attrNames sets));

  # Network files and everything they `require`, each file once.
  networks =
    let
      load = file: (call (import file)) // { _file = toString file; };
      closure = builtins.genericClosure {
        startSet = map (f: { key = toString f; }) networkExprs;
        operator = { key }: map (f: { key = toString f; }) ((load key).require or [ ]);
      };
    in
    map ({ key }: load key) closure;

  network = zipAttrs networks;

  meta = builtins.foldl' (a: b: a // b) { } (network.network or [ ]);

  nixpkgs =
    if meta ? nixpkgs then
      (if builtins.isAttrs meta.nixpkgs && meta.nixpkgs ? outPath then meta.nixpkgs.outPath else meta.nixpkgs)
    else <nixpkgs>;

  lib = import (nixpkgs + "/lib");
  evalConfig = import (nixpkgs + "/nixos/lib/eval-config.nix");

  reserved = [ "network" "defaults" "resources" "require" "nixpkgs" "_file" ];
  machineNames = builtins.attrNames (removeAttrs network reserved);
  defaults = network.defaults or [ ];

  toModuleList = v: if builtins.isList v then v else [ v ];

  # NixOps' default hostName is the machine's name, but NixOS types
  # networking.hostName as one DNS label (RFC 1123 plus `_`, at most 63
  # characters). A name that is none gives its first label, and the rest
  # becomes networking.domain where the OS declares it: `web.example.com` is
  # host `web` in domain `example.com`, `db_1.` is host `db_1`. A name without
  # a valid first label is passed on as it is, for the OS's type to judge.
  # See docs/decisions.md.
  isLabel = s: builtins.match "[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?" s != null;
  nameDefaults = options: name:
    let
      split = builtins.match "([^.]*)[.](.*)" name;
      first = builtins.elemAt split 0;
      rest = lib.removeSuffix "." (builtins.elemAt split 1);
      isDomain = rest != "" && builtins.all isLabel (lib.splitString "." rest);
    in
    if isLabel name || split == null || !isLabel first then { hostName = lib.mkOverride 900 name; }
    else { hostName = lib.mkOverride 900 first; }
      // lib.optionalAttrs (isDomain && options ? networking.domain) { domain = lib.mkOverride 900 rest; };

  resources = { machines = lib.mapAttrs (_: node: node.config) nodes; }
    // lib.mapAttrs (_: defs: lib.foldl' (a: b: a // b) { } defs) (zipAttrs (network.resources or [ ]));

  nodes = lib.listToAttrs (map
    (name: {
      inherit name;
      value = evalConfig {
        inherit system;
        modules =
          builtins.concatMap
            (n: lib.optional (n ? ${name}) { _file = n._file; imports = toModuleList n.${name}; })
            networks
          ++ defaults
          ++ [
            ./options.nix
            ({ options, ... }: {
              key = "nixops-stuff";
              # Where error messages say these definitions come from (the
              # tool's Nix files live in a temporary directory).
              _file = "<nixops>/eval-machine-info.nix, defaults of machine ‘${name}’";
              networking = nameDefaults options name;
              deployment.targetHost = lib.mkOverride 900 name;
              deployment.name = deploymentName;
              deployment.uuid = uuid;
              deployment.arguments = args;
              _module.args = { inherit nodes resources uuid deploymentName name; };
            })
          ];
      };
    })
    machineNames);

  # What the tool needs of each machine, as plain data.
  machineInfo = name: node:
    let d = node.config.deployment; in {
      inherit (d) targetEnv targetHost targetPort targetUser sshOptions tags magicRollback confirmTimeout
        healthChecks
        privilegeEscalationCommand alwaysActivate hasFastConnection owners provisionSSHKey;
      keys = lib.mapAttrs (keyInfo name) d.keys;
    };

  # A key's options without its secret; exactly one source must be given.
  keyInfo = machine: k: v:
    if builtins.isString v then {
      name = k; destDir = "/run/keys"; user = "root"; group = "root"; permissions = "0600";
      uploadAt = "pre-activation"; source = "text"; keyFile = null; keyCommand = null;
      keyCommandTimeout = 60; deprecatedString = true;
    } else
      let sources = builtins.filter (s: v.${s} != null) [ "text" "keyFile" "keyCommand" ]; in
      if builtins.length sources != 1 then
        throw "machine ‘${machine}’: deployment.keys.${k} must set exactly one of text, keyFile and keyCommand (it sets ${if sources == [ ] then "none" else builtins.concatStringsSep " and " sources})"
      else {
        inherit (v) name destDir user group permissions uploadAt keyFile keyCommand keyCommandTimeout;
        source = builtins.head sources;
        deprecatedString = false;
      };

  # A selector is { tag; regex; }: the regex matches the machine's name, or
  # with `tag`, one of its deployment.tags (evaluated only then).
  include = builtins.fromJSON includeJSON;
  exclude = builtins.fromJSON excludeJSON;
  selects = name: node: s:
    if s.tag then builtins.any (t: builtins.match s.regex t != null) node.config.deployment.tags
    else builtins.match s.regex name != null;
  isSelected = name: node:
    (include == null || builtins.any (selects name node) include)
    && !(builtins.any (selects name node) exclude);

  toplevel = node: node.config.system.build.toplevel;
in
{
  inherit nodes network;

  # One evaluation gives the deployment info of every machine and, for the
  # selected ones, the toplevel's derivation and output paths.
  info = {
    network = {
      description = meta.description or "Unnamed NixOps network";
      enableRollback = meta.enableRollback or false;
      unknownAttrs = builtins.attrNames (removeAttrs meta [ "description" "enableRollback" "storage" "lock" "nixpkgs" ]);
    };
    resourceTypes = builtins.attrNames (zipAttrs (network.resources or [ ]));
    machines = lib.mapAttrs
      (name: node: machineInfo name node // lib.optionalAttrs (isSelected name node) {
        toplevel = (toplevel node).outPath;
        drvPath = (toplevel node).drvPath;
      })
      nodes;
  };

  # The `text` of the selected machines' keys, for the tool to read from
  # nix-instantiate's stdout (evaluated only: nothing goes to the store).
  keyTexts = lib.mapAttrs
    (name: node: lib.mapAttrs (k: v: if builtins.isString v then v else v.text)
      (lib.filterAttrs (k: v: builtins.isString v || v.text != null) node.config.deployment.keys))
    (lib.filterAttrs isSelected nodes);

  # For `show-arguments`: the arguments the network files take, by name,
  # true where the file gives a default.
  arguments = builtins.foldl'
    (acc: f: let x = import f; in acc // (if builtins.isFunction x then builtins.functionArgs x else { }))
    { }
    networkExprs;

  # For `show-option`: one option's value on one machine.
  optionValue =
    let path = builtins.fromJSON optionPathJSON; in
    if !(nodes ? ${optionMachine}) then throw "there is no machine named ‘${optionMachine}’ in the network"
    else lib.attrByPath path
      (throw "machine ‘${optionMachine}’ has no option ‘${lib.concatStringsSep "." path}’")
      nodes.${optionMachine}.config;
}
