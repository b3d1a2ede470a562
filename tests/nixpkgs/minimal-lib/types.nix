{ lib }:
# Option types.  Every type has `name`, `description`, `check`,
# `merge loc defs` (defs = [ { file; value; } ], already type-checked),
# `emptyValue`, `getSubOptions`, `getSubModules`, `substSubModules`,
# `functor` and `typeMerge` (used when an option is declared twice).
let
  inherit (builtins) isAttrs isList isString isInt isFloat isBool isFunction
    head tail length filter all any elem concatLists mapAttrs attrNames
    concatStringsSep toJSON foldl' zipAttrsWith;
  inherit (lib.options) showOption showFiles showDefs getValues getFiles
    mergeEqualOption mergeOneOption mergeUniqueOption mergeDefaultOption;
  inherit (lib.modules) mergeDefinitions mkOptionDefault evalModules;
  imap1 = lib.lists.imap1;
  isFunc = lib.trivial.isFunction;
  isStringLike = lib.strings.isStringLike;

  isType = type: x: (x._type or "") == type;
  isOptionType = isType "option-type";

  defaultFunctor = name: {
    inherit name;
    type = types.${name} or null;
    wrapped = null;
    payload = null;
    binOp = a: b: null;
  };

  # Merge two types of the same kind (by functor), or return null.
  defaultTypeMerge = self: f':
    let f = self.functor; in
    if f.name != f'.name then null
    else if f.wrapped == null && f'.wrapped == null && f.payload == null && f'.payload == null
    then self
    else if f.wrapped != null && f'.wrapped != null then
      (let w = f.wrapped.typeMerge f'.wrapped.functor; in
        if w == null || f.type == null then null else f.type w)
    else if f.payload != null && f'.payload != null then
      (let p = f.binOp f.payload f'.payload; in
        if p == null || f.type == null then null else f.type p)
    else null;

  mkOptionType =
    { name
    , description ? null
    , descriptionClass ? null
    , check ? (x: true)
    , merge ? mergeDefaultOption
    , emptyValue ? { }
    , getSubOptions ? prefix: { }
    , getSubModules ? null
    , substSubModules ? m: null
    , typeMerge ? null
    , functor ? defaultFunctor name
    , deprecationMessage ? null
    , nestedTypes ? { }
    }:
    let
      self = {
        _type = "option-type";
        inherit name check merge emptyValue getSubOptions getSubModules
          substSubModules functor deprecationMessage nestedTypes
          descriptionClass;
        description = if description == null then name else description;
        typeMerge = if typeMerge != null then typeMerge else defaultTypeMerge self;
      };
    in self;

  # "list of (null or string)" style descriptions.
  phrase = t:
    if elem (t.descriptionClass or null) [ "conjunction" "composite" ]
    then "(${t.description})" else t.description;

  intBetween = name: lo: hi: desc: mkOptionType {
    inherit name;
    description = desc;
    descriptionClass = "nonRestrictiveClause";
    check = x: isInt x && x >= lo && x <= hi;
    merge = mergeEqualOption;
    functor = defaultFunctor name // { type = _: intBetween name lo hi desc; };
  };

  between = lo: hi:
    assert lib.assertMsg (lo <= hi) "ints.between: lowest must be smaller than highest";
    intBetween "intBetween" lo hi "integer between ${toString lo} and ${toString hi} (both inclusive)";
  unsign = bits: intBetween "unsignedInt${toString bits}" 0 (pow2 bits - 1)
    "${toString bits} bit unsigned integer; between 0 and ${toString (pow2 bits - 1)} (both inclusive)";
  sign = bits: intBetween "signedInt${toString bits}" (0 - pow2 (bits - 1)) (pow2 (bits - 1) - 1)
    "${toString bits} bit signed integer; between ${toString (0 - pow2 (bits - 1))} and ${toString (pow2 (bits - 1) - 1)} (both inclusive)";
  pow2 = n: foldl' (a: _: a * 2) 1 (lib.lists.range 1 n);

  separatedString = sep: mkOptionType {
    name = "separatedString";
    description =
      if sep == "" then "Concatenated string"
      else "strings concatenated with ${toJSON sep}";
    descriptionClass = "noun";
    check = isString;
    merge = loc: defs: concatStringsSep sep (getValues defs);
    functor = defaultFunctor "separatedString" // {
      payload = sep;
      binOp = a: b: if a == b then a else null;
    };
  };

  types = rec {
    inherit isType mkOptionType isOptionType defaultFunctor defaultTypeMerge;

    raw = mkOptionType {
      name = "raw";
      description = "raw value";
      descriptionClass = "noun";
      check = _: true;
      merge = mergeOneOption;
    };

    anything = mkOptionType {
      name = "anything";
      description = "anything";
      descriptionClass = "noun";
      check = _: true;
      merge = loc: defs:
        let
          kind = v: if isAttrs v && isStringLike v then "stringCoercibleSet" else builtins.typeOf v;
          common = foldl' (k: def:
            if kind def.value == k then k
            else throw "The option `${showOption loc}' has conflicting option types in ${showFiles (getFiles defs)}")
            (kind (head defs).value) defs;
        in
        if common == "set" then (attrsOf anything).merge loc defs
        else if common == "stringCoercibleSet" then mergeOneOption loc defs
        else if common == "lambda" then
          (arg: anything.merge (loc ++ [ "<function body>" ])
            (map (def: { inherit (def) file; value = def.value arg; }) defs))
        else mergeEqualOption loc defs;
    };

    unspecified = mkOptionType {
      name = "unspecified";
      description = "unspecified value";
      descriptionClass = "noun";
    };

    bool = mkOptionType {
      name = "bool";
      description = "boolean";
      descriptionClass = "noun";
      check = isBool;
      merge = mergeEqualOption;
    };

    int = mkOptionType {
      name = "int";
      description = "signed integer";
      descriptionClass = "noun";
      check = isInt;
      merge = mergeEqualOption;
    };

    ints = {
      inherit between;
      unsigned = intBetween "unsignedInt" 0 9223372036854775807 "unsigned integer, meaning >=0";
      positive = intBetween "positiveInt" 1 9223372036854775807 "positive integer, meaning >0";
      u8 = unsign 8;
      u16 = unsign 16;
      u32 = unsign 32;
      s8 = sign 8;
      s16 = sign 16;
      s32 = sign 32;
    };

    port = ints.u16;

    float = mkOptionType {
      name = "float";
      description = "floating point number";
      descriptionClass = "noun";
      check = isFloat;
      merge = mergeEqualOption;
    };

    number = either int float;

    str = mkOptionType {
      name = "str";
      description = "string";
      descriptionClass = "noun";
      check = isString;
      merge = mergeEqualOption;
    };

    nonEmptyStr = mkOptionType {
      name = "nonEmptyStr";
      description = "non-empty string";
      descriptionClass = "noun";
      check = x: isString x && builtins.match "[ \t\n]*" x == null;
      merge = mergeEqualOption;
    };

    singleLineStr = mkOptionType {
      name = "singleLineStr";
      description = "(optionally newline-terminated) single-line string";
      descriptionClass = "noun";
      check = x: isString x && builtins.match "[^\n]*\n?" x != null;
      merge = loc: defs: lib.strings.removeSuffix "\n" (mergeEqualOption loc defs);
    };

    strMatching = pattern: mkOptionType {
      name = "strMatching ${toJSON pattern}";
      description = "string matching the pattern ${pattern}";
      descriptionClass = "noun";
      check = x: isString x && builtins.match pattern x != null;
      merge = mergeEqualOption;
    };

    inherit separatedString;
    lines = separatedString "\n";
    commas = separatedString ",";
    envVar = separatedString ":";

    attrs = mkOptionType {
      name = "attrs";
      description = "attribute set";
      descriptionClass = "noun";
      check = isAttrs;
      merge = loc: foldl' (res: def: res // def.value) { };
      emptyValue = { value = { }; };
    };

    package = mkOptionType {
      name = "package";
      description = "package";
      descriptionClass = "noun";
      check = x: lib.attrsets.isDerivation x || lib.strings.isStorePath x;
      merge = mergeOneOption;
    };

    path = mkOptionType {
      name = "path";
      description = "path";
      descriptionClass = "noun";
      check = x: isStringLike x && builtins.substring 0 1 (toString x) == "/";
      merge = mergeEqualOption;
    };

    listOf = elemType: mkOptionType {
      name = "listOf";
      description = "list of ${phrase elemType}";
      descriptionClass = "composite";
      check = isList;
      merge = loc: defs:
        map (x: x.value) (filter (x: x ? value) (concatLists (imap1 (n: def:
          imap1 (m: v:
            (mergeDefinitions
              (loc ++ [ "[definition ${toString n}-entry ${toString m}]" ])
              elemType
              [ { inherit (def) file; value = v; } ]).optionalValue)
            def.value) defs)));
      emptyValue = { value = [ ]; };
      getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "*" ]);
      getSubModules = elemType.getSubModules;
      substSubModules = m: listOf (elemType.substSubModules m);
      functor = defaultFunctor "listOf" // { wrapped = elemType; };
      nestedTypes.elemType = elemType;
    };

    nonEmptyListOf = elemType:
      let list = listOf elemType; in list // {
        description = "non-empty ${list.description}";
        check = l: list.check l && l != [ ];
        emptyValue = { };
      };

    attrsOf = elemType: mkOptionType {
      name = "attrsOf";
      description = "attribute set of ${phrase elemType}";
      descriptionClass = "composite";
      check = isAttrs;
      merge = loc: defs:
        mapAttrs (n: v: v.value) (lib.attrsets.filterAttrs (n: v: v ? value)
          (zipAttrsWith (name: defs':
            (mergeDefinitions (loc ++ [ name ]) elemType defs').optionalValue)
            (map (def: mapAttrs (n: v: { inherit (def) file; value = v; }) def.value) defs)));
      emptyValue = { value = { }; };
      getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "<name>" ]);
      getSubModules = elemType.getSubModules;
      substSubModules = m: attrsOf (elemType.substSubModules m);
      functor = defaultFunctor "attrsOf" // { wrapped = elemType; };
      nestedTypes.elemType = elemType;
    };

    # Attribute names are known without evaluating the values (mkIf false
    # elements then throw when accessed instead of disappearing).
    lazyAttrsOf = elemType: mkOptionType {
      name = "lazyAttrsOf";
      description = "lazy attribute set of ${phrase elemType}";
      descriptionClass = "composite";
      check = isAttrs;
      merge = loc: defs:
        zipAttrsWith (name: defs':
          let merged = mergeDefinitions (loc ++ [ name ]) elemType defs'; in
          merged.optionalValue.value or elemType.emptyValue.value or merged.mergedValue)
          (map (def: mapAttrs (n: v: { inherit (def) file; value = v; }) def.value) defs);
      emptyValue = { value = { }; };
      getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "<name>" ]);
      getSubModules = elemType.getSubModules;
      substSubModules = m: lazyAttrsOf (elemType.substSubModules m);
      functor = defaultFunctor "lazyAttrsOf" // { wrapped = elemType; };
      nestedTypes.elemType = elemType;
    };

    nullOr = elemType: mkOptionType {
      name = "nullOr";
      description = "null or ${phrase elemType}";
      descriptionClass = "conjunction";
      check = x: x == null || elemType.check x;
      merge = loc: defs:
        let nrNulls = lib.lists.count (def: def.value == null) defs; in
        if nrNulls == length defs then null
        else if nrNulls != 0 then
          throw "The option `${showOption loc}' is defined both null and not null, in ${showFiles (getFiles defs)}."
        else elemType.merge loc defs;
      emptyValue = { value = null; };
      getSubOptions = elemType.getSubOptions;
      getSubModules = elemType.getSubModules;
      substSubModules = m: nullOr (elemType.substSubModules m);
      functor = defaultFunctor "nullOr" // { wrapped = elemType; };
      nestedTypes.elemType = elemType;
    };

    unique = { message }: type: mkOptionType {
      name = "unique";
      inherit (type) description descriptionClass check emptyValue getSubOptions getSubModules;
      merge = mergeUniqueOption { inherit message; inherit (type) merge; };
      substSubModules = m: unique { inherit message; } (type.substSubModules m);
      functor = defaultFunctor "unique" // { type = unique { inherit message; }; wrapped = type; };
      nestedTypes.elemType = type;
    };
    uniq = unique { message = ""; };

    enum = values:
      let
        show = v:
          if isString v then ''"${v}"''
          else if isInt v then toString v
          else if isBool v then lib.trivial.boolToString v
          else ''<${builtins.typeOf v}>'';
      in mkOptionType {
        name = "enum";
        description =
          if values == [ ] then "impossible (empty enum)"
          else if length values == 1 then "value ${show (head values)} (singular enum)"
          else "one of ${concatStringsSep ", " (map show values)}";
        descriptionClass = if length values < 2 then "noun" else "conjunction";
        check = x: elem x values;
        merge = mergeEqualOption;
        functor = defaultFunctor "enum" // {
          payload = values;
          binOp = a: b: lib.lists.unique (a ++ b);
        };
      };

    either = t1: t2: mkOptionType rec {
      name = "either";
      description = "${phrase t1} or ${phrase t2}";
      descriptionClass = "conjunction";
      check = x: t1.check x || t2.check x;
      merge = loc: defs:
        let vals = getValues defs; in
        if all t1.check vals then t1.merge loc defs
        else if all t2.check vals then t2.merge loc defs
        else mergeOneOption loc defs;
      typeMerge = f':
        let
          mt1 = t1.typeMerge (head f'.wrapped).functor;
          mt2 = t2.typeMerge (lib.lists.last f'.wrapped).functor;
        in
        if name == f'.name && mt1 != null && mt2 != null
        then either mt1 mt2 else null;
      functor = defaultFunctor name // { wrapped = [ t1 t2 ]; };
      nestedTypes.left = t1;
      nestedTypes.right = t2;
    };

    oneOf = ts:
      let h = head ts; t = tail ts; in
      if ts == [ ] then throw "types.oneOf needs to get at least one type in its argument"
      else foldl' either h t;

    coercedTo = coercedType: coerceFunc: finalType:
      assert lib.assertMsg (coercedType.getSubModules == null)
        "coercedTo: coercedType must not have submodules (it's a ${coercedType.description})";
      mkOptionType rec {
        name = "coercedTo";
        description = "${phrase finalType} or ${phrase coercedType} convertible to it";
        check = x: (coercedType.check x && finalType.check (coerceFunc x)) || finalType.check x;
        merge = loc: defs:
          let coerceVal = v: if coercedType.check v then coerceFunc v else v; in
          finalType.merge loc (map (def: def // { value = coerceVal def.value; }) defs);
        emptyValue = finalType.emptyValue;
        getSubOptions = finalType.getSubOptions;
        getSubModules = finalType.getSubModules;
        substSubModules = m: coercedTo coercedType coerceFunc (finalType.substSubModules m);
        typeMerge = t: null;
        functor = defaultFunctor name // { wrapped = finalType; };
        nestedTypes.coercedType = coercedType;
        nestedTypes.finalType = finalType;
      };

    functionTo = elemType: mkOptionType {
      name = "functionTo";
      description = "function that evaluates to a(n) ${phrase elemType}";
      descriptionClass = "composite";
      check = isFunc;
      merge = loc: defs: fnArgs:
        (mergeDefinitions (loc ++ [ "<function body>" ]) elemType
          (map (fn: { inherit (fn) file; value = fn.value fnArgs; }) defs)).mergedValue;
      getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "<function body>" ]);
      getSubModules = elemType.getSubModules;
      substSubModules = m: functionTo (elemType.substSubModules m);
      functor = defaultFunctor "functionTo" // { wrapped = elemType; };
      nestedTypes.elemType = elemType;
    };

    submodule = modules: submoduleWith {
      shorthandOnlyDefinesConfig = true;
      modules = lib.lists.toList modules;
    };

    submoduleWith =
      { modules
      , specialArgs ? { }
      , shorthandOnlyDefinesConfig ? false
      , description ? null
      , class ? null
      }@attrs:
      let
        # Definitions become modules.  With shorthandOnlyDefinesConfig an
        # attrset definition is pure config (an `options` attribute there
        # would be a definition of an option called `options`).
        defModules = defs: map (def:
          if isAttrs def.value && shorthandOnlyDefinesConfig
          then { _file = def.file; config = def.value; }
          else { _file = def.file; imports = [ def.value ]; }) defs;
        nameModule = name: {
          _file = "lib/types.nix#submodule-name";
          config._module.args.name = mkOptionDefault name;
        };
      in mkOptionType {
        name = "submodule";
        description = if description != null then description else "submodule";
        descriptionClass = "noun";
        check = x: isAttrs x || isFunc x || lib.isPath x;
        merge = loc: defs:
          (evalModules {
            inherit specialArgs class;
            prefix = loc;
            modules = [ (nameModule (lib.lists.last loc)) ] ++ modules ++ defModules defs;
          }).config;
        emptyValue = { value = { }; };
        getSubOptions = prefix:
          (evalModules {
            inherit specialArgs class prefix;
            modules = [ (nameModule "<name>") ] ++ modules;
          }).options;
        getSubModules = modules;
        substSubModules = m: submoduleWith (attrs // { modules = m; });
        functor = defaultFunctor "submodule" // {
          type = submoduleWith;
          payload = { inherit modules specialArgs shorthandOnlyDefinesConfig description class; };
          binOp = lhs: rhs:
            if lhs.shorthandOnlyDefinesConfig != rhs.shorthandOnlyDefinesConfig then null
            else {
              modules = lhs.modules ++ rhs.modules;
              specialArgs = lhs.specialArgs // rhs.specialArgs;
              inherit (lhs) shorthandOnlyDefinesConfig;
              description = if lhs.description != null then lhs.description else rhs.description;
              class = if lhs.class != null then lhs.class else rhs.class;
            };
        };
      };

    # A module that is merged but not evaluated (deferred).
    deferredModule = mkOptionType {
      name = "deferredModule";
      description = "module";
      descriptionClass = "noun";
      check = x: isAttrs x || isFunc x || lib.isPath x;
      merge = loc: defs: {
        imports = map (def: lib.modules.setDefaultModuleLocation "${def.file}, via option ${showOption loc}" def.value) defs;
      };
      functor = defaultFunctor "deferredModule";
    };
  };
in
types
