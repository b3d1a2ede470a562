{ lib }:
# A compact re-implementation of the nixpkgs module system.
#
# Pipeline of `evalModules`:
#   1. collect: load every module (calling function modules with lazily
#      supplied arguments), follow `imports`, de-duplicate by key
#      (builtins.genericClosure), honour `disabledModules`.
#   2. merge: walk declarations (`options`) and definitions (`config`)
#      level by level.  Where a declaration is an option, its definitions are
#      resolved (mkIf/mkMerge/mkOverride/mkOrder), type-checked and merged.
#      Definitions that hit no declaration are remembered as "unmatched".
#   3. config = option tree with every option replaced by its value.
#      The returned `config`/`options` are guarded by the `_module.check`
#      test on unmatched definitions.
let
  inherit (builtins) isAttrs isList isString isBool isFunction isPath head
    tail length filter concatLists attrNames mapAttrs foldl' elem all any
    typeOf zipAttrsWith genericClosure addErrorContext sort removeAttrs
    toJSON;
  inherit (lib.options) isOption showOption showDefs showFiles mkOption;
  concatMap = lib.lists.concatMap;
  imap1 = lib.lists.imap1;

  # ---------------------------------------------------------------------
  # Properties
  # ---------------------------------------------------------------------
  defaultOverridePriority = 100;
  defaultOrderPriority = 1000;

  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkAssert = assertion: message: content:
    mkIf (if assertion then true else throw "\nFailed assertion: ${message}") content;
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkOptionDefault = mkOverride 1500;
  mkDefault = mkOverride 1000;
  mkImageMediaOverride = mkOverride 60;
  mkForce = mkOverride 50;
  mkVMOverride = mkOverride 10;
  mkOrder = priority: content: { _type = "order"; inherit priority content; };
  mkBefore = mkOrder 500;
  mkAfter = mkOrder 1500;
  mkFixStrictness = x: x;

  typeOfProp = v: if isAttrs v then v._type or "" else "";

  # Push mkIf / mkMerge / mkOverride into the attributes of an attrset-valued
  # definition, without evaluating any mkIf condition.  Returns a list.
  pushDownProperties = cfg:
    let t = typeOfProp cfg; in
    if t == "merge" then concatMap pushDownProperties cfg.contents
    else if t == "if" then
      map (mapAttrs (n: v: mkIf cfg.condition v)) (pushDownProperties cfg.content)
    else if t == "override" then
      map (mapAttrs (n: v: mkOverride cfg.priority v)) (pushDownProperties cfg.content)
    else [ cfg ];

  # Resolve the properties of one definition value (at option level).
  # Returns a list of { value; prio; order }.  The outermost override and
  # order wrappers win.
  discharge = prio: order: v:
    let t = typeOfProp v; in
    if t == "merge" then concatMap (discharge prio order) v.contents
    else if t == "if" then
      (if !isBool v.condition then throw "‘mkIf’ called with a non-Boolean condition"
       else if v.condition then discharge prio order v.content
       else [ ])
    else if t == "override" then
      discharge (if prio == null then v.priority else prio) order v.content
    else if t == "order" then
      discharge prio (if order == null then v.priority else order) v.content
    else [{
      value = v;
      prio = if prio == null then defaultOverridePriority else prio;
      order = if order == null then defaultOrderPriority else order;
    }];

  dischargeProperties = def: map (x: x.value) (discharge null null def);

  # Resolve, type check and merge the definitions ([{ file; value; }]) of
  # one option.
  mergeDefinitions = loc: type: defs: rec {
    defsFinal' =
      let
        discharged = concatMap (d:
          map (p: p // { inherit (d) file; })
            (addErrorContext "while evaluating definitions from `${d.file}':"
              (discharge null null d.value))) defs;
        highestPrio = foldl' (p: d: if d.prio < p then d.prio else p) 9999 discharged;
        winners = filter (d: d.prio == highestPrio) discharged;
        sorted =
          if any (d: d.order != defaultOrderPriority) winners
          then sort (a: b: a.order < b.order) winners
          else winners;
      in {
        values = map (d: { inherit (d) file value; }) sorted;
        inherit highestPrio;
      };
    defsFinal = defsFinal'.values;
    isDefined = defsFinal != [ ];
    mergedValue =
      if isDefined then
        if all (d: type.check d.value) defsFinal then type.merge loc defsFinal
        else throw "A definition for option `${showOption loc}' is not of type `${type.description}'. Definition values:${showDefs (filter (d: !type.check d.value) defsFinal)}"
      else throw "The option `${showOption loc}' was accessed but has no value defined. Try setting the option.";
    optionalValue = if isDefined then { value = mergedValue; } else { };
  };

  # Several declarations of the same option are combined; only the type may
  # be given more than once (if the types can be merged, e.g. submodules).
  mergeOptionDecls = loc: decls:
    if length decls == 1 then
      (head decls).options // { declarations = [ (head decls).file ]; }
    else foldl' (res: d:
      let
        o = d.options;
        bothHave = k: o ? ${k} && res ? ${k};
        mergedType = if bothHave "type" then res.type.typeMerge o.type.functor else null;
      in
      if bothHave "default" || bothHave "example" || bothHave "description"
        || bothHave "apply" || (bothHave "type" && mergedType == null)
      then throw "The option `${showOption loc}' in `${d.file}' is already declared in ${showFiles res.declarations}."
      else o // res // { declarations = res.declarations ++ [ d.file ]; }
        // lib.optionalAttrs (bothHave "type") { type = mergedType; }
    ) { declarations = [ ]; } decls;

  evalOptionValue = loc: decls: defs:
    let
      opt = mergeOptionDecls loc decls;
      type = opt.type or lib.types.unspecified;
      defs' = lib.optional (opt ? default)
        { file = head opt.declarations; value = mkOptionDefault opt.default; }
        ++ defs;
      res =
        if (opt.readOnly or false) && length defs' > 1
        then throw "The option `${showOption loc}' is read-only, but it's set multiple times. Definition values:${showDefs defs'}"
        else mergeDefinitions loc type defs';
      value = if opt ? apply then opt.apply res.mergedValue else res.mergedValue;
    in opt // {
      value = addErrorContext "while evaluating the option `${showOption loc}':" value;
      inherit type loc;
      inherit (res.defsFinal') highestPrio;
      definitions = map (d: d.value) res.defsFinal;
      files = map (d: d.file) res.defsFinal;
      definitionsWithLocations = res.defsFinal;
      inherit (res) isDefined;
      __toString = _: showOption loc;
    };

  # One level of the option tree.
  #   decls: [ { file; options = <subtree of declarations>; } ]
  #   defs:  [ { file; config = <attrset, properties pushed down>; } ]
  # Returns { options = <tree>; unmatched = [ { file; prefix; value; } ]; }
  mergeLevel = loc: decls: defs:
    let
      declsByName = zipAttrsWith (n: v: v) (map (d:
        if !isAttrs d.options then
          throw "The option declarations in `${d.file}' at `${showOption loc}' are not an attribute set."
        else mapAttrs (n: o: { inherit (d) file; options = o; }) d.options) decls);
      defsByName = zipAttrsWith (n: v: v) (map (d:
        if !isAttrs d.config then
          throw "You're trying to declare a value of type `${typeOf d.config}'\nrather than an attribute set for the option\n`${showOption loc}'!\n\nThis usually happens if `${showOption loc}' has option\ndefinitions inside that are not matched. Please check how to properly define\nthis option by e.g. referring to `man 5 configuration.nix'!\n(definition in `${d.file}')"
        else mapAttrs (n: v: { inherit (d) file; value = v; }) d.config) defs);
      sub = mapAttrs (n: ds:
        let
          l = loc ++ [ n ];
          opts = filter (d: isOption d.options) ds;
          myDefs = defsByName.${n} or [ ];
        in
        if opts == [ ] then
          mergeLevel l ds (concatMap (d:
            map (c: { inherit (d) file; config = c; }) (pushDownProperties d.value)) myDefs)
        else if length opts == length ds then
          { options = evalOptionValue l ds myDefs; unmatched = [ ]; }
        else
          let nonOpt = head (filter (d: !isOption d.options) ds); in
          throw "The option `${showOption l}' in `${(head opts).file}' is a prefix of options in `${nonOpt.file}'."
      ) declsByName;
    in {
      options = mapAttrs (n: s: s.options) sub;
      unmatched = concatLists (map (n:
        if sub ? ${n} then
          map (u: u // { prefix = [ n ] ++ u.prefix; }) sub.${n}.unmatched
        else
          map (d: { inherit (d) file value; prefix = [ n ]; }) defsByName.${n}
      ) (attrNames defsByName));
    };

  mergeModules = prefix: modules:
    mergeLevel prefix
      (map (m: { file = m._file; options = m.options; }) modules)
      (concatMap (m: map (c: { file = m._file; config = c; }) (pushDownProperties m.config)) modules);

  # ---------------------------------------------------------------------
  # Loading modules
  # ---------------------------------------------------------------------
  knownModuleAttrs = [ "_class" "_file" "key" "disabledModules" "imports"
    "options" "config" "meta" "freeformType" ];

  unifyModuleSyntax = file: key: m:
    let
      common = {
        _file = toString (m._file or file);
        key = toString (m.key or key);
        disabledModules = m.disabledModules or [ ];
        imports = m.imports or [ ];
      };
    in
    if m ? config || m ? options then
      let bad = removeAttrs m knownModuleAttrs; in
      if bad != { } then
        throw "Module `${key}' has an unsupported attribute `${head (attrNames bad)}'. This is caused by introducing a top-level `config' or `options' attribute. Add configuration attributes immediately on the top level instead, or move all of them (namely: ${toString (attrNames bad)}) into the explicit `config' attribute."
      else common // { options = m.options or { }; config = m.config or { }; }
    else common // {
      options = { };
      config = removeAttrs m [ "_class" "_file" "key" "disabledModules" "imports" "meta" "freeformType" ];
    };

  # Call a module function.  Arguments it names that are not in `args`
  # (config, options, lib, specialArgs...) come lazily from
  # config._module.args.
  applyModuleArgs = key: f: args:
    let
      extraArgs = mapAttrs (name: _:
        addErrorContext "while evaluating the module argument `${name}' in \"${key}\":"
          (args.${name} or args.config._module.args.${name}))
        (lib.trivial.functionArgs f);
    in f (args // extraArgs);

  loadModule = args: fallbackFile: fallbackKey: m:
    if lib.trivial.isFunction m then
      unifyModuleSyntax fallbackFile fallbackKey (applyModuleArgs fallbackKey m args)
    else if isAttrs m then
      let t = m._type or "module"; in
      if t == "module" then unifyModuleSyntax fallbackFile fallbackKey m
      else if t == "if" || t == "override" || t == "merge" then
        loadModule args fallbackFile fallbackKey { config = m; }
      else throw "Could not load a value as a module, because it is of type ${toJSON t}, in file ${toString fallbackFile}."
    else if isList m then
      throw "Module imports can't be nested lists. Perhaps you meant to remove one level of lists? Definitions:${showDefs [ { file = fallbackFile; value = m; } ]}"
    else
      let file = toString m; imported = import m; in
      unifyModuleSyntax file file
        (if lib.trivial.isFunction imported then applyModuleArgs file imported args else imported);

  collectModules = modulesPath: initial: args:
    let
      node = parentFile: parentKey: n: m:
        let module = loadModule args parentFile "${parentKey}:anon-${toString n}" m; in {
          inherit (module) key;
          inherit module;
          children = imap1 (node module._file module.key) module.imports;
        };
      roots = imap1 (node lib.options.unknownModule "") initial;
      all = genericClosure { startSet = roots; operator = x: x.children; };
      moduleKey = m:
        if isString m && builtins.substring 0 1 m != "/" then "${toString modulesPath}/${m}"
        else if isAttrs m && m ? key then toString m.key
        else toString m;
      disabledKeys = concatMap (x: map moduleKey x.module.disabledModules) all;
      keep = filter (x: !(elem x.key disabledKeys));
      final =
        if disabledKeys == [ ] then all
        else genericClosure { startSet = keep roots; operator = x: keep x.children; };
    in map (x: x.module) final;

  # ---------------------------------------------------------------------
  # evalModules
  # ---------------------------------------------------------------------
  evalModules = evalArgs@{ modules, prefix ? [ ], args ? { }, specialArgs ? { },
                           check ? true, class ? null }:
    let
      internalModule = {
        _file = "lib/modules.nix";
        key = "lib/modules.nix";
        options = {
          _module.args = mkOption {
            type = lib.types.lazyAttrsOf lib.types.raw;
            internal = true;
            description = "Additional arguments passed to each module.";
          };
          _module.check = mkOption {
            type = lib.types.bool;
            internal = true;
            default = true;
            description = "Whether to check whether all option definitions have matching declarations.";
          };
          _module.specialArgs = mkOption {
            readOnly = true;
            internal = true;
            description = "Externally provided module arguments that can't be modified from within a configuration.";
          };
        };
        config = {
          _module.args = { inherit extendModules; moduleType = type; };
          _module.specialArgs = specialArgs;
        };
      };

      legacyModules =
        lib.optional (evalArgs ? args) { _file = "lib/modules.nix#args"; config._module.args = args; }
        ++ lib.optional (evalArgs ? check) { _file = "lib/modules.nix#check"; config._module.check = mkDefault check; };

      moduleArgs = {
        inherit lib options config specialArgs;
        _class = class;
        _prefix = prefix;
      } // specialArgs;

      collected = collectModules (specialArgs.modulesPath or "")
        (modules ++ [ internalModule ] ++ legacyModules) moduleArgs;

      merged = mergeModules prefix (lib.lists.reverseList collected);

      options = merged.options;

      toConfig = opts: mapAttrs (n: v: if isOption v then v.value else toConfig v) opts;
      config = toConfig options;

      checkUnmatched =
        if config._module.check && merged.unmatched != [ ] then
          let first = head merged.unmatched; in
          throw "The option `${showOption (prefix ++ first.prefix)}' does not exist. Definition values:${showDefs [ first ]}"
        else null;
      checked = builtins.seq checkUnmatched;

      extendModules = extendArgs@{ modules ? [ ], specialArgs ? { }, prefix ? [ ] }:
        evalModules (evalArgs // {
          modules = evalArgs.modules ++ modules;
          specialArgs = (evalArgs.specialArgs or { }) // specialArgs;
          prefix = extendArgs.prefix or evalArgs.prefix or [ ];
        });

      type = lib.types.submoduleWith {
        inherit modules specialArgs class;
      };
    in {
      _type = "configuration";
      options = checked options;
      config = checked (removeAttrs config [ "_module" ]);
      _module = checked config._module;
      inherit extendModules type class;
    };

  setDefaultModuleLocation = file: m: { _file = file; imports = [ m ]; };

  # ---------------------------------------------------------------------
  # Aliases / renames
  # ---------------------------------------------------------------------
  mkAliasIfDef = option: mkIf (isOption option && option.isDefined);
  mkAliasDefinitions = mkAliasAndWrapDefinitions (x: x);
  mkAliasAndWrapDefinitions = wrap: option:
    mkAliasIfDef option (wrap (mkMerge option.definitions));
  mkAliasAndWrapDefsWithPriority = wrap: option:
    let
      prio = option.highestPrio or defaultOverridePriority;
      defsWithPrio = map (mkOverride prio) option.definitions;
    in mkAliasIfDef option (wrap (mkMerge defsWithPrio));

  doRename = { from, to, visible, warn, use, withPriority ? true }:
    { config, options, ... }:
    let
      fromOpt = lib.getAttrFromPath from options;
      toOf = lib.attrByPath to
        (abort "Renaming error: option `${showOption to}' does not exist.");
      toType = let opt = lib.attrByPath to { } options; in opt.type or (lib.types.submodule { });
    in {
      options = lib.setAttrByPath from (mkOption {
        inherit visible;
        description = "Alias of {option}`${showOption to}`.";
        apply = x: use (toOf config);
        type = toType;
      });
      config = mkMerge [
        {
          warnings = lib.optional (warn && fromOpt.isDefined)
            "The option `${showOption from}' defined in ${showFiles fromOpt.files} has been renamed to `${showOption to}'.";
        }
        (if withPriority
         then mkAliasAndWrapDefsWithPriority (lib.setAttrByPath to) fromOpt
         else mkAliasAndWrapDefinitions (lib.setAttrByPath to) fromOpt)
      ];
    };

  mkRenamedOptionModule = from: to: doRename {
    inherit from to;
    visible = false;
    warn = true;
    use = builtins.trace "Obsolete option `${showOption from}' is used. It was renamed to `${showOption to}'.";
  };
  mkAliasOptionModule = from: to: doRename {
    inherit from to;
    visible = true;
    warn = false;
    use = x: x;
  };
  mkRemovedOptionModule = optionName: replacementInstructions:
    { options, ... }: {
      options = lib.setAttrByPath optionName (mkOption {
        visible = false;
        apply = x: throw "The option `${showOption optionName}' can no longer be used since it's been removed. ${replacementInstructions}";
      });
      config.assertions =
        let opt = lib.getAttrFromPath optionName options; in [{
          assertion = !opt.isDefined;
          message = ''
            The option definition `${showOption optionName}' in ${showFiles opt.files} no longer has any effect; please remove it.
            ${replacementInstructions}
          '';
        }];
    };
in
{
  inherit evalModules collectModules mergeModules mergeDefinitions
    mergeOptionDecls evalOptionValue unifyModuleSyntax applyModuleArgs
    pushDownProperties dischargeProperties setDefaultModuleLocation
    mkIf mkAssert mkMerge mkOverride mkOptionDefault mkDefault mkForce
    mkVMOverride mkImageMediaOverride mkOrder mkBefore mkAfter mkFixStrictness
    defaultOverridePriority defaultOrderPriority
    mkAliasIfDef mkAliasDefinitions mkAliasAndWrapDefinitions
    mkAliasAndWrapDefsWithPriority doRename mkRenamedOptionModule
    mkAliasOptionModule mkRemovedOptionModule;
  defaultPriority = defaultOverridePriority;
  importJSON = file: builtins.fromJSON (builtins.readFile file);
}
