# Evaluates a network: every machine's NixOS configuration, with NixOps'
# module arguments and defaults, and what the tool needs of it as plain data.
# Front ends, chosen by what the network is:
#   - NixOps network files (`networkExprsJSON`), through nixpkgs'
#     nixos/lib/eval-config.nix (`network.nixpkgs`, else <nixpkgs>);
#   - a flake's nixopsConfigurations.<name> (`flakeKind = "nixops"`), through
#     its `nixpkgs` attribute's lib.nixosSystem, evaluated purely;
#   - a Colmena hive: a hive.nix file, or a flake's `colmena` output (hive.nix
#     beside this file);
#   - a flake's `colmenaHive` output, already evaluated by Colmena's makeHive.
# Called by the tool: with --arg/--argstr through nix-instantiate for files,
# and applied inline by `nix eval` for flakes, where no file outside the
# flake can be read (then `nixops` carries the tool's modules as values).
# See src/network/mod.rs: `meta` once (no machine is evaluated for it), then
# `machines` in evaluation workers (src/network/pool.rs).
{ networkExprsJSON ? "[]"   # JSON list of absolute network file paths
, flakeOutput ? null        # a flake's network: the output's value
, flakeKind ? null          # "nixops", "colmena" or "colmenaHive"
, flakeName ? ""            # `flakeref#output`, for messages
, args ? { }                # the deployment's arguments (set-args)
, uuid
, deploymentName
, includeJSON ? "null"      # JSON list of selectors of machines to instantiate (null: all)
, excludeJSON ? "[]"        # JSON list of selectors of machines not to instantiate
, machinesJSON ? "[]"       # for `machines`: JSON list of the machines to evaluate, in order
, toplevelsJSON ? "true"    # for `machines`: also the selected ones' toplevels
, system ? builtins.currentSystem
, optionMachine ? ""        # for `show-option`
, optionPathJSON ? "[]"
, physicalJSON ? "{}"       # NixOps networks: what state says of machines and resources (physical spec)
, physicalFile ? null       # the same in a file of the tool's private directory (when it holds resources' values, which may be secret)
, includePhysicalJSON ? "true" # "false": without the physical spec (`show-option` without --include-physical)
, inventoryFile ? ""        # the inventory's outputs (JSON), once its command has run (src/network/inventory.rs)
, nixops ? { options = import ./options.nix; keys = import ./keys.nix; hive = import ./hive.nix; colmena = import ./colmena-compat.nix; resources = import ./resources.nix; backends = import ./backends.nix; }
}:
let
  # A network (or hive) that is a function gets the deployment's arguments,
  # and `inventory` when it names it.
  call = x:
    if builtins.isFunction x then
      x (if builtins.functionArgs x ? inventory then args // { inherit inventory; } else args)
    else x;

  # What the network's inventory command printed (`network.inventory`,
  # `meta.inventory` of a hive). It is read once the network's attributes
  # are known, so they must not depend on it.
  inventory =
    if inventoryFile == "" then
      throw "the inventory is not known here: network.inventory (meta.inventory) itself must not depend on `inventory`, and a network without one has none"
    else builtins.fromJSON (builtins.readFile inventoryFile);
  networkExprs = map (p: /. + p) (builtins.fromJSON networkExprsJSON);
  isFlake = flakeOutput != null;

  zipAttrs = sets: builtins.listToAttrs (map
    (name: { inherit name; value = builtins.catAttrs name sets; })
    (builtins.concatMap builtins.attrNames sets));

  # A file is a Colmena hive when it is named hive.nix or has `meta`.
  isHiveFile = f: baseNameOf (toString f) == "hive.nix" || (call (import f)) ? meta;
  hiveFiles = builtins.filter isHiveFile networkExprs;

  front =
    if isFlake then
      (if flakeKind == "nixops" then nixopsFront
      else if flakeKind == "colmena" then hiveFront flakeOutput flakeName true
      else if flakeKind == "colmenaHive" then colmenaHiveFront
      else throw "unknown kind of flake network ‘${toString flakeKind}’")
    else if hiveFiles == [ ] then nixopsFront
    else if builtins.length networkExprs == 1 then hiveFront (import (builtins.head networkExprs)) (toString (builtins.head networkExprs)) false
    else throw "a Colmena hive (${toString (builtins.head hiveFiles)}) is a network of its own: give it as the only network file";

  # The modules the tool adds to every machine.
  toolModules = name: [
    nixops.options
    nixops.keys
  ] ++ backendModules ++ [
    {
      _file = "<nixops>/eval-machine-info.nix, deployment defaults of machine ‘${name}’";
      deployment.targetHost = lib.mkOverride 900 name;
      deployment.name = deploymentName;
      deployment.uuid = uuid;
      deployment.arguments = args;
    }
  ];

  # Every backend's deployment.<targetEnv>.* options (src/backend/), on
  # every machine, as NixOps declares them.
  backendModules = lib.mapAttrsToList
    (env: b: { _file = "<nixops>/backend ${env}"; imports = [ b.module ]; })
    nixops.backends;

  ## Colmena hives (hive.nix beside this file).
  hiveFront = rawHive: where: hermetic: nixops.hive {
    inherit rawHive where hermetic system;
    args =
      if builtins.isFunction rawHive && builtins.functionArgs rawHive ? inventory
      then args // { inherit inventory; } else args;
    nodeModules = hiveModules;
  };

  # A hive node's system is the one Colmena builds: Colmena's modules
  # (colmena-compat.nix) instead of keys.nix; the tool's options define
  # nothing in the system.
  hiveModules = name: nixops.colmena.modules ++ [
    nixops.options
    {
      _file = "<nixops>/eval-machine-info.nix, deployment defaults of node ‘${name}’";
      # Colmena's default, at an option default's priority.
      deployment.targetHost = lib.mkOptionDefault name;
      deployment.name = deploymentName;
      deployment.uuid = uuid;
      deployment.arguments = args;
      _module.args.inventory = inventory;
    }
  ];

  ## An evaluated hive (Colmena's makeHive, schema v0.5): its nodes carry
  ## Colmena's deployment options only, so the tool's own take defaults.
  colmenaHiveFront =
    let
      h = flakeOutput;
      m = h.metaConfig or { };
    in
    if !(h ? __schema) then throw "${flakeName} is no evaluated Colmena hive (it has no __schema; Colmena makes it with colmena.lib.makeHive)"
    else if h.__schema != "v0.5" then throw "${flakeName} is a Colmena hive of schema ${h.__schema}; this tool reads schema v0.5 (Colmena 0.4 and later)"
    else {
      inherit (h) nodes;
      lib = h.introspect ({ lib, ... }: lib);
      pkgs = h.introspect ({ pkgs, ... }: pkgs);
      description = m.description or "Unnamed NixOps network";
      enableRollback = false;
      knownAttrs = [ ];
      unknownAttrs = [ ];
      inventory = null;
      resources = { };
      allowApplyAll = m.allowApplyAll or true;
      machinesFile = m.machinesFile or null;
      unsupported = [ ];
    };

  ## NixOps networks: files, or a flake's nixopsConfigurations.<name>.
  # Network files (or the flake's network) and everything they `require`,
  # each file once.
  networks =
    let
      load = file: (call (import file)) // { _file = toString file; };
      roots = if isFlake then [ ((call flakeOutput) // { _file = flakeName; }) ] else map load networkExprs;
      closure = builtins.genericClosure {
        startSet = map (f: { key = toString f; }) (builtins.concatMap (n: n.require or [ ]) roots);
        operator = { key }: map (f: { key = toString f; }) ((load key).require or [ ]);
      };
      required = map ({ key }: load key) closure;
    in
    roots ++ builtins.filter (n: !(builtins.elem n._file (map (r: r._file) roots))) required;

  network = zipAttrs networks;

  meta = builtins.foldl' (a: b: a // b) { } (network.network or [ ]);

  # A flake's network names its nixpkgs flake, as in NixOps 2.0.
  flakeNixpkgs =
    if network ? nixpkgs then builtins.head network.nixpkgs
    else throw "the network ${flakeName} has no ‘nixpkgs’ attribute: NixOps flake networks name their nixpkgs flake, e.g. nixopsConfigurations.default = { nixpkgs = inputs.nixpkgs; ... }";

  # `network.nixpkgs`, from the first network file that sets it (NixOps
  # 2.0 reads the first file's only): a package set (`import <nixpkgs> { }`,
  # NixOps 2.0's form, of which it uses `path`), a source or flake input
  # (`outPath`), or a path.
  networkNixpkgs =
    let setting = builtins.filter (n: n ? nixpkgs) (network.network or [ ]);
    in if setting == [ ] then null else (builtins.head setting).nixpkgs;
  nixpkgsPath =
    let v = networkNixpkgs; in
    if v == null then <nixpkgs>
    else if builtins.isAttrs v && v ? path && v ? lib then v.path
    else if builtins.isAttrs v && v ? outPath then v.outPath
    else v;

  nixopsLib =
    if isFlake then
      (flakeNixpkgs.lib or (throw "the ‘nixpkgs’ of ${flakeName} is no nixpkgs flake (it has no lib)"))
    else import (nixpkgsPath + "/lib");
  evalConfig =
    if isFlake then
      (flakeNixpkgs.lib.nixosSystem or (throw "the ‘nixpkgs’ of ${flakeName} is no nixpkgs flake (it has no lib.nixosSystem)"))
    else import (nixpkgsPath + "/nixos/lib/eval-config.nix");

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

  ## Non-machine resources, evaluated as NixOps evaluates them: each
  ## resources.<type>.<name> is a module of its own, made of what state holds
  ## of it (first, where NixOps puts its physical spec) and every network
  ## file's definitions of it, with NixOps' options (resources.nix) and module
  ## arguments (pkgs, uuid, name, resources, nodes). Machines see them in their
  ## `resources` argument, beside `resources.machines`.
  resourceTypes = builtins.attrNames (zipAttrs (network.resources or [ ]));
  resourceNames = type: lib.unique (builtins.concatMap (n: builtins.attrNames ((n.resources or { }).${type} or { })) networks);
  evalResource = type: name:
    let
      defs = builtins.concatMap
        (n: lib.optional ((n.resources or { }).${type} or { } ? ${name})
          { _file = n._file; imports = toModuleList n.resources.${type}.${name}; })
        networks;
      fromState = physical.resources.${type}.${name} or null;
    in
    removeAttrs
      (lib.evalModules {
        modules = [
          {
            _file = "<nixops>/eval-machine-info.nix, arguments of resource ‘${name}’";
            _module.args = { inherit (nixopsFront) pkgs; inherit uuid name; resources = nixopsResources; nodes = nixopsNodes; };
          }
          (resourceModules.${type} or nixops.resources.unchecked)
          {
            _file = "<nixops>/eval-machine-info.nix, deployment of resource ‘${name}’";
            deployment = { name = deploymentName; inherit uuid; arguments = args; };
          }
          nixops.resources.common
        ]
        ++ lib.optional (fromState != null)
          { _file = "<nixops>/eval-machine-info.nix, what state holds of resources.${type}.${name}"; config = fromState; }
        ++ defs;
      }).config [ "_module" ];
  # NixOps' own resource types and the backends' (nixops-aws' ec2KeyPairs,
  # gceDisks, ...): a backend may bring `resources` beside its options, each
  # a module, or { kind; module; }.
  resourceModules = builtins.foldl'
    (a: b: a // lib.mapAttrs (_: v: if builtins.isAttrs v && v ? module then v.module else v) (b.resources or { }))
    nixops.resources.types
    (builtins.attrValues nixops.backends);
  declaredResources = lib.genAttrs resourceTypes (type: lib.genAttrs (resourceNames type) (evalResource type));
  # NixOps' two types are always there, even empty; the machines win over
  # a `resources.machines` of the network.
  nixopsResources = { sshKeyPairs = { }; commandOutput = { }; } // declaredResources
    // { machines = lib.mapAttrs (_: node: node.config) nixopsNodes; };
  # What the tool needs of each declared resource (never what state fed
  # back: a private key must not reach Nix's output); each module is
  # evaluated, so a misspelt option is an error here.
  resourcesInfo = lib.mapAttrs
    (type: lib.mapAttrs (name: r: builtins.seq (builtins.attrNames r)
      (lib.optionalAttrs (type == "commandOutput") { inherit (r) script; })))
    declaredResources;

  # NixOps 2.0's "physical spec" for a machine it deploys to an existing host
  # (targetEnv "none"): what it adds to every such machine's configuration
  # from its state, as a network file of its own that comes before the
  # user's. It is placed as NixOps places it, so that definitions of the
  # same option merge in the same order (extraHosts' lines, root's
  # authorized keys). For none, NixOps derives nothing from
  # the other machines: its hosts list and kernel modules stay empty, and it
  # knows no host key to put in knownHosts. `physical.machines` holds per
  # machine what state records: the NixOps-generated SSH key NixOps logs in
  # with (it stays authorized for root, as NixOps keeps it), and the
  # stateVersion NixOps read from the machine when it first reached it.
  # Options the OS does not declare are left out (NixOps fails there).
  # `physical.resources.<type>.<name>` holds the resources' attributes
  # NixOps feeds back (a key pair's halves, a command's output).
  physical = builtins.fromJSON (if physicalFile == null then physicalJSON else builtins.readFile physicalFile);
  physicalModule = name:
    let
      s = physical.machines.${name} or { };
      key = s.sshPublicKey or null;
      # What the machine's backend adds (src/backend/): modules of the
      # network's nixpkgs, and option definitions (some at a priority).
      backendSpec = s.spec or { imports = [ ]; defs = [ ]; };
      backendModule = {
        _file = "<nixops>/eval-machine-info.nix, backend's physical spec of machine ‘${name}’";
        # Modules as Nix text, each a file of its own in the store (not
        # secret: a hardware configuration, a module of the backend's).
        imports = map (p: physicalNixpkgs + "/${p}") backendSpec.imports
          ++ lib.imap1 (i: text: builtins.toFile "nixops-physical-${name}-${toString i}.nix" text) (backendSpec.modules or [ ]);
        config = lib.mkMerge (map
          (d: lib.setAttrByPath d.path (if d ? priority then lib.mkOverride d.priority d.value else d.value))
          backendSpec.defs);
      };
      spec = { config, lib, options, ... }: {
        config = {
          boot = lib.optionalAttrs (options ? boot.kernelModules) { kernelModules = [ ]; };
          networking =
            lib.optionalAttrs (options ? networking.extraHosts) { extraHosts = "\n"; }
            // lib.optionalAttrs (options ? networking.firewall.trustedInterfaces) { firewall.trustedInterfaces = [ ]; }
            // lib.optionalAttrs (s ? privateIPv4) { privateIPv4 = s.privateIPv4; }
            // lib.optionalAttrs (s ? publicIPv4) { publicIPv4 = s.publicIPv4; };
          system = lib.optionalAttrs (options ? system.stateVersion) {
            stateVersion =
              let release = s.stateVersion or config.system.nixos.release or null; in
              lib.mkIf (release != null) (lib.mkDefault release);
          };
        } // lib.optionalAttrs ((s.knownHosts or [ ]) != [ ] && options ? services.openssh.knownHosts) {
          # Every machine whose host key NixOps knows, as NixOps lists them.
          services.openssh.knownHosts = lib.listToAttrs (map
            (h: { inherit (h) name; value = { hostNames = [ h.name ]; publicKey = h.key; }; })
            s.knownHosts);
        };
        imports = lib.optional (key != null) ({ options, ... }: {
          # NixOps' name (an alias of users.users): the same definition order.
          config.users = lib.optionalAttrs (options ? users.extraUsers) { extraUsers.root.openssh.authorizedKeys.keys = [ key ]; };
        }) ++ lib.optional (s ? spec) backendModule;
      };
    in
    { _file = "<nixops>/eval-machine-info.nix, physical spec of machine ‘${name}’"; imports = [ spec ]; };
  # Where a backend's physical spec finds nixpkgs' modules: the network's
  # nixpkgs.
  physicalNixpkgs = if isFlake then flakeNixpkgs.outPath else nixpkgsPath;

  nixopsNodes = lib.listToAttrs (map
    (name: {
      inherit name;
      value = evalConfig {
        inherit system;
        modules =
          lib.optional (builtins.fromJSON includePhysicalJSON) (physicalModule name)
          ++ builtins.concatMap
            (n: lib.optional (n ? ${name}) { _file = n._file; imports = toModuleList n.${name}; })
            networks
          ++ defaults
          ++ toolModules name
          ++ [
            ({ options, ... }: {
              key = "nixops-stuff";
              # Where error messages say these definitions come from (the
              # tool's Nix files live in a temporary directory).
              _file = "<nixops>/eval-machine-info.nix, defaults of machine ‘${name}’";
              networking = nameDefaults options name;
              _module.args = { nodes = nixopsNodes; resources = nixopsResources; inherit uuid deploymentName name inventory; };
            })
          ];
      };
    })
    machineNames);

  # NixOps 2.0's `network.storage` (one backend) and `network.lock`: the
  # legacy SQLite file is what this tool has; the rest are named as what it
  # cannot do.
  storage = meta.storage or null;
  lock = meta.lock or null;
  backendProblems = what: setting: ok: others:
    if setting == null then [ ]
    else
      let names = builtins.attrNames setting; in
      if builtins.length names != 1 then [ "network.${what} sets ${toString (builtins.length names)} backends (${builtins.concatStringsSep ", " names}); NixOps takes exactly one" ]
      else if builtins.elem (builtins.head names) ok then [ ]
      else [ "network.${what}.${builtins.head names}: ${others}" ];
  storageProblems = backendProblems "storage" storage [ "legacy" ]
    "this tool keeps state in a SQLite file (network.storage.legacy; -s FILE or $NIXOPS_STATE) or PostgreSQL (-s postgresql://...), not in NixOps' memory or plugin backends";
  lockProblems = backendProblems "lock" lock [ "noop" "legacy" ]
    "this tool locks each deployment itself (NixOps' own lock file, or PostgreSQL's advisory lock), not through NixOps' lock plugins";

  nixopsFront = {
    nodes = nixopsNodes;
    lib = nixopsLib;
    pkgs =
      if isFlake then flakeNixpkgs.legacyPackages.${system}
      else import nixpkgsPath { inherit system; };
    description = meta.description or "Unnamed NixOps network";
    enableRollback = meta.enableRollback or false;
    knownAttrs = map (a: "network.${a}") [ "description" "enableRollback" "nixpkgs" "storage" "lock" "machinesFile" "inventory" ];
    unknownAttrs = map (a: "network.${a}") (builtins.attrNames (removeAttrs meta [ "description" "enableRollback" "storage" "lock" "nixpkgs" "machinesFile" "inventory" ]));
    machinesFile = meta.machinesFile or null;
    inventory = meta.inventory or null;
    resources = resourcesInfo;
    allowApplyAll = true;
    unsupported = storageProblems ++ lockProblems;
    # The file network.storage.legacy names (a path stays a file name).
    databaseFile =
      if storage != null && storage ? legacy && storage.legacy ? databasefile
      then toString storage.legacy.databasefile else null;
  };

  ## Common to every front end.
  inherit (front) nodes;
  inherit (front) lib;

  # What the tool needs of each machine, as plain data. Options of the
  # tool's own that an evaluated Colmena hive lacks take their defaults.
  machineInfo = name: node:
    let
      d = node.config.deployment;
      env = d.targetEnv or "none";
      backend = nixops.backends.${env} or null;
    in {
      targetEnv = env;
      # The options of its backend that the tool reads (src/backend/).
      backend = if backend == null || backend.info == [ ] then null
        else if builtins.isFunction backend.info then backend.info d.${backend.optionsAttr or env}
        else lib.genAttrs backend.info (o: d.${backend.optionsAttr or env}.${o});
      # null (Colmena): deployed only with `apply-local`, never over SSH.
      inherit (d) targetHost;
      # null (Colmena): ssh's own configuration chooses the user.
      targetUser = if d.targetUser == null then "" else d.targetUser;
      targetPort = d.targetPort or null;
      sshOptions = d.sshOptions or [ ];
      tags = d.tags or [ ];
      magicRollback = d.magicRollback or true;
      confirmTimeout = d.confirmTimeout or 30;
      healthChecks = d.healthChecks or { cmd = [ ]; http = [ ]; };
      privilegeEscalationCommand = d.privilegeEscalationCommand or [ "sudo" "-H" "--" ];
      alwaysActivate = d.alwaysActivate or true;
      hasFastConnection = d.hasFastConnection or false;
      buildOnTarget = d.buildOnTarget or false;
      replaceUnknownProfiles = d.replaceUnknownProfiles or true;
      allowLocalDeployment = d.allowLocalDeployment or false;
      owners = d.owners or [ ];
      keys = lib.mapAttrs (keyInfo name) (d.keys or { });
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
        inherit (v) name destDir user group permissions uploadAt keyFile keyCommand;
        keyCommandTimeout = v.keyCommandTimeout or 60;
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

  # `inventory` as the network gives it: a command (argv), a file, or
  # { command | file; timeout; } (a path stays a file name).
  inventorySpec = v:
    let where = "network.inventory (meta.inventory of a hive)"; in
    if v == null then null
    else if builtins.isList v then { command = v; file = null; timeout = null; }
    else if builtins.isPath v || builtins.isString v then { command = null; file = toString v; timeout = null; }
    else if builtins.isAttrs v then {
      command = v.command or null;
      file = if v ? file then toString v.file else null;
      timeout = v.timeout or null;
    }
    else throw "${where} must be a command (a list of strings), a JSON file, or { command = [ ... ]; timeout = SECONDS; }";
  # `show-option`'s option (optionMachine, optionPathJSON).
  theOption =
    let path = builtins.fromJSON optionPathJSON; in
    if !(nodes ? ${optionMachine}) then throw "there is no machine named ‘${optionMachine}’ in the network"
    else lib.attrByPath path
      (throw "machine ‘${optionMachine}’ has no option ‘${lib.concatStringsSep "." path}’")
      nodes.${optionMachine}.config;

in
{
  inherit nodes;
  network = if isFlake || hiveFiles != [ ] then { } else network;

  # The network's own attributes and its machines' names: no machine is
  # evaluated for them.
  meta = {
    network = {
      inherit (front) description enableRollback unknownAttrs knownAttrs allowApplyAll unsupported;
      inventory = inventorySpec front.inventory;
      # A path stays a file name (toString): the file is read by Nix itself.
      machinesFile = if front.machinesFile == null then null else toString front.machinesFile;
      databaseFile = front.databaseFile or null;
    };
    inherit (front) resources;
    machineNames = builtins.attrNames nodes;
  };

  # For the tool's evaluation workers (src/network/pool.rs): the machines
  # named in machinesJSON, one after the other, each with its deployment
  # info, what it uses that the tool cannot do and, when selected, its
  # toplevel's derivation and output paths. Each machine is announced on
  # stderr when it begins and when its result is known (builtins.trace
  # prints at once), so the tool takes results as they come and knows which
  # of the files Nix reports evaluating each machine read.
  machines =
    let
      toplevels = builtins.fromJSON toplevelsJSON;
      result = name: node: machineInfo name node
        // lib.optionalAttrs (toplevels && isSelected name node) {
          toplevel = (toplevel node).outPath;
          drvPath = (toplevel node).drvPath;
        };
      step = count: name:
        let
          node = nodes.${name} or (throw "there is no machine named ‘${name}’ in the network");
          json = builtins.toJSON { inherit name; value = result name node; };
        in
        # The lookup marks the machine's beginning in the evaluation trace
        # (trace.rs), before anything of it is evaluated.
        builtins.trace "__NIXOPS_EVAL_BEGIN ${builtins.toJSON name}${builtins.substring 0 0 (builtins.getEnv "__NIXOPS_EVAL_BEGIN_${name}")}"
          (builtins.seq json (builtins.trace "__NIXOPS_EVAL_DONE ${json}" (count + 1)));
    in
    builtins.foldl' step 0 (builtins.fromJSON machinesJSON);

  # The `text` of the selected machines' keys, for the tool to read from
  # Nix's stdout (evaluated only: nothing goes to the store).
  keyTexts = lib.mapAttrs
    (name: node: lib.mapAttrs (k: v: if builtins.isString v then v else v.text)
      (lib.filterAttrs (k: v: builtins.isString v || v.text != null) (node.config.deployment.keys or { })))
    (lib.filterAttrs isSelected nodes);

  # For `eval` and `repl` (Colmena's introspection): a function of
  # { lib, pkgs, nodes } applied to the network.
  introspect = f: f { inherit nodes lib; inherit (front) pkgs; };

  # For `show-arguments`: the arguments the network takes, by name, true
  # where it gives a default.
  arguments =
    let argsOf = x: if builtins.isFunction x then builtins.functionArgs x else { }; in
    if isFlake then argsOf flakeOutput
    else builtins.foldl' (acc: f: acc // argsOf (import f)) { } networkExprs;

  # For `show-option`: one option's value on one machine.
  optionValue = theOption;

  # A backend's package option (a machine's disk image): its derivation, or
  # null for a value that is no derivation.
  optionDerivation = if lib.isDerivation theOption then theOption.drvPath else null;
}
