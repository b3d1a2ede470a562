{ lib }:
let
  inherit (builtins) head tail length filter all isFunction isList isAttrs
    isBool isInt isString concatStringsSep foldl' split elem;
in
rec {
  isOption = x: isAttrs x && (x._type or "") == "option";

  # Only the attributes actually given end up in the declaration
  # (`opt ? default` matters), exactly like nixpkgs.
  mkOption = attrs: attrs // { _type = "option"; };

  mkEnableOption = name: mkOption {
    default = false;
    example = true;
    description = "Whether to enable ${name}.";
    type = lib.types.bool;
  };

  mkPackageOption = pkgs: name:
    { nullable ? false, default ? name, example ? null, extraDescription ? "", pkgsText ? "pkgs" }:
    let
      path = if isList default then default else [ default ];
      name' = if isList name then concatStringsSep "." name else name;
      pkg = lib.attrByPath path (throw "${concatStringsSep "." path} cannot be found in ${pkgsText}") pkgs;
    in mkOption ({
      type = if nullable then lib.types.nullOr lib.types.package else lib.types.package;
      description = "The ${name'} package to use." + extraDescription;
    } // lib.optionalAttrs (default != null) { default = pkg; }
      // lib.optionalAttrs (example != null) { inherit example; });

  mkSinkUndeclaredOptions = attrs: mkOption ({
    internal = true;
    visible = false;
    default = false;
    description = "Sink for option definitions.";
    type = lib.types.unspecified;
    apply = x: throw "Option value is not readable because the option is not declared.";
  } // attrs);

  # ---- merge functions -------------------------------------------------
  getValues = map (x: x.value);
  getFiles = map (x: x.file);

  mergeDefaultOption = loc: defs:
    let list = getValues defs; in
    if length list == 1 then head list
    else if all isFunction list then x: mergeDefaultOption loc (map (f: f x) list)
    else if all isList list then lib.concatLists list
    else if all isAttrs list then foldl' (a: b: a // b) { } list
    else if all isBool list then foldl' (a: b: a || b) false list
    else if all isString list then lib.concatStrings list
    else if all isInt list && all (x: x == head list) list then head list
    else throw "Cannot merge definitions of `${showOption loc}'. Definition values:${showDefs defs}";

  mergeUniqueOption = { message, merge ? loc: defs: (head defs).value }: loc: defs:
    if length defs == 1 then merge loc defs
    else throw "The option `${showOption loc}' is defined multiple times while it's expected to be unique.\n${message}\nDefinition values:${showDefs defs}\n${prioritySuggestion}";

  mergeOneOption = mergeUniqueOption { message = ""; };

  mergeEqualOption = loc: defs:
    if defs == [ ] then abort "This case should never happen."
    else (foldl' (val: def:
      if def.value != val.value then
        throw "The option `${showOption loc}' has conflicting definition values:${showDefs [ val def ]}\n${prioritySuggestion}"
      else val) (head defs) (tail defs)).value;

  prioritySuggestion = ''
    Use `lib.mkForce value` or `lib.mkDefault value` to change the priority on any of these definitions.
  '';

  # ---- documentation helpers -------------------------------------------
  literalExpression = text:
    if !isString text then throw "literalExpression expects a string."
    else { _type = "literalExpression"; inherit text; };
  literalExample = literalExpression;
  literalMD = text: { _type = "literalMD"; inherit text; };
  mdDoc = x: x;

  # ---- printing ----------------------------------------------------------
  showOption = parts:
    let
      special = [ "<name>" "*" "<function body>" ];
      esc = p: if elem p special then p else lib.strings.escapeNixIdentifier p;
    in concatStringsSep "." (map esc parts);

  showFiles = files: concatStringsSep " and " (map (f: "`${f}'") files);

  showDefs = defs: lib.concatStrings (map (def:
    let
      pretty = builtins.tryEval
        (lib.generators.toPretty { depthLimit = 10; } def.value);
      lines = filter isString (split "\n" pretty.value);
      shown = concatStringsSep "\n    "
        (lib.take 5 lines ++ lib.optional (length lines > 5) "...");
      result =
        if !pretty.success then ""
        else if length lines > 1 then ":\n    " + shown
        else ": " + shown;
    in "\n- In `${def.file}'${result}") defs);

  unknownModule = "<unknown-file>";
}
