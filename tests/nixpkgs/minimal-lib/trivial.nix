{ lib }:
rec {
  id = x: x;
  const = x: _: x;
  flip = f: a: b: f b a;
  pipe = builtins.foldl' (x: f: f x);
  concat = a: b: a ++ b;
  "or" = a: b: a || b;
  "and" = a: b: a && b;
  bitAnd = builtins.bitAnd;
  bitOr = builtins.bitOr;
  bitXor = builtins.bitXor;
  boolToString = b: if b then "true" else "false";
  mergeAttrs = a: b: a // b;
  mapNullable = f: a: if a == null then null else f a;
  defaultTo = d: v: if v == null then d else v;
  max = a: b: if a > b then a else b;
  min = a: b: if a < b then a else b;
  mod = base: int: base - (int * (builtins.div base int));
  compare = a: b: if a < b then -1 else if a > b then 1 else 0;
  inherit (builtins) seq deepSeq;

  fix = f: let x = f x; in x;
  fix' = f: let x = f x // { __unfix__ = f; }; in x;
  extends = overlay: f: self: let super = f self; in super // overlay self super;
  composeExtensions = f: g: final: prev:
    let fApplied = f final prev; in fApplied // g final (prev // fApplied);
  composeManyExtensions = builtins.foldl' composeExtensions (_: _: { });
  makeExtensible = makeExtensibleWithCustomName "extend";
  makeExtensibleWithCustomName = extenderName: rattrs:
    fix' (self: (rattrs self) // {
      ${extenderName} = f: makeExtensibleWithCustomName extenderName (extends f rattrs);
    });

  # Functors (attrsets with __functor) count as functions, like in nixpkgs.
  isFunction = f: builtins.isFunction f
    || (builtins.isAttrs f && f ? __functor && isFunction (f.__functor f));
  functionArgs = f:
    if builtins.isAttrs f && f ? __functor
    then f.__functionArgs or (functionArgs (f.__functor f))
    else builtins.functionArgs f;
  setFunctionArgs = f: args: { __functor = self: f; __functionArgs = args; };
  mirrorFunctionArgs = f: g: setFunctionArgs g (functionArgs f);
  toFunction = v: if isFunction v then v else _: v;

  warn = msg: builtins.trace "[1;31mwarning: ${msg}[0m";
  warnIf = cond: msg: if cond then warn msg else x: x;
  warnIfNot = cond: msg: if cond then x: x else warn msg;
  throwIf = cond: msg: if cond then throw msg else x: x;
  throwIfNot = cond: msg: if cond then x: x else throw msg;
  info = msg: builtins.trace "INFO: ${msg}";

  assertMsg = pred: msg: pred || builtins.throw msg;
  assertOneOf = name: val: xs:
    assertMsg (builtins.elem val xs)
      "${name} must be one of ${builtins.toJSON xs}, but is: ${builtins.toJSON val}";

  importJSON = path: builtins.fromJSON (builtins.readFile path);
  version = "23.11pre-stub";
  release = "23.11";
  isInOldestRelease = _: false;
  inNixShell = builtins.getEnv "IN_NIX_SHELL" != "";
}
