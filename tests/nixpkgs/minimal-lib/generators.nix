{ lib }:
let
  inherit (builtins) isAttrs isList isString isFunction typeOf attrNames
    concatStringsSep toJSON replaceStrings split filter length;
in
rec {
  # A small pretty printer producing Nix-like syntax, used in error messages.
  # Values nested deeper than `depthLimit` are shown as <unevaluated>.
  toPretty = { depthLimit ? 10, multiline ? true, ... }: value:
    let
      go = depth: indent: v:
        let
          intro = if multiline then "\n${indent}  " else " ";
          outro = if multiline then "\n${indent}" else " ";
          t = typeOf v;
        in
        if depth > depthLimit then "<unevaluated>"
        else if t == "null" then "null"
        else if t == "bool" then (if v then "true" else "false")
        else if t == "int" || t == "float" then toString v
        else if t == "path" then toString v
        else if t == "string" then
          (let lines = filter isString (split "\n" v); in
            if multiline && length lines > 1 then
              "''" + intro
              + concatStringsSep intro (map (replaceStrings [ "\${" "''" ] [ "''\${" "'''" ]) lines)
              + outro + "''"
            else lib.strings.escapeNixString v)
        else if t == "lambda" then "<function>"
        else if t == "list" then
          (if v == [ ] then "[ ]"
           else "[" + intro + concatStringsSep intro (map (go (depth + 1) "${indent}  ") v) + outro + "]")
        else if v ? _type && v._type == "literalExpression" then v.text
        else if v ? __functor then "<function>"
        else if (v.type or null) == "derivation" then "<derivation ${v.name or "?"}>"
        else if v == { } then "{ }"
        else "{" + intro
          + concatStringsSep intro (map (n:
              "${lib.strings.escapeNixIdentifier n} = ${go (depth + 1) "${indent}  " v.${n}};") (attrNames v))
          + outro + "}";
    in go 0 "" value;

  toJSON = { }: builtins.toJSON;
  toKeyValue = { mkKeyValue ? k: v: "${k}=${toString v}", ... }: attrs:
    lib.concatStrings (map (k: mkKeyValue k attrs.${k} + "\n") (attrNames attrs));
}
