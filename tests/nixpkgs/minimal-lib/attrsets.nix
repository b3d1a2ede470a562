{ lib }:
let
  inherit (builtins) attrNames attrValues isAttrs listToAttrs head tail
    length filter mapAttrs hasAttr getAttr foldl' elemAt;
in
rec {
  inherit (builtins) attrNames attrValues hasAttr getAttr listToAttrs
    mapAttrs removeAttrs intersectAttrs catAttrs;

  attrByPath = attrPath: default: set:
    let
      n = length attrPath;
      go = i: s:
        if i == n then s
        else let a = elemAt attrPath i; in
          if isAttrs s && s ? ${a} then go (i + 1) s.${a} else default;
    in go 0 set;
  hasAttrByPath = attrPath: e:
    let
      n = length attrPath;
      go = i: s:
        if i == n then true
        else let a = elemAt attrPath i; in isAttrs s && s ? ${a} && go (i + 1) s.${a};
    in go 0 e;
  setAttrByPath = attrPath: value:
    let
      n = length attrPath;
      go = i: if i == n then value else { ${elemAt attrPath i} = go (i + 1); };
    in go 0;
  getAttrFromPath = attrPath: set:
    attrByPath attrPath
      (throw "cannot find attribute `${lib.concatStringsSep "." attrPath}'") set;
  attrVals = nameList: set: map (x: set.${x}) nameList;
  getAttrs = names: attrs: lib.genAttrs names (name: attrs.${name});

  nameValuePair = name: value: { inherit name value; };
  filterAttrs = pred: set:
    listToAttrs (lib.concatMap (name: let v = set.${name}; in
      if pred name v then [ (nameValuePair name v) ] else [ ]) (attrNames set));
  filterAttrsRecursive = pred: set:
    listToAttrs (lib.concatMap (name:
      let v = set.${name}; in
      if pred name v then [
        (nameValuePair name (if isAttrs v then filterAttrsRecursive pred v else v))
      ] else [ ]) (attrNames set));
  foldAttrs = op: nul: list_of_attrs:
    foldl' (a: n: foldl' (a': name: a' // { ${name} = op n.${name} (a.${name} or nul); }) a (attrNames n))
      { } (lib.reverseList list_of_attrs);
  foldlAttrs = f: init: set:
    foldl' (acc: name: f acc name set.${name}) init (attrNames set);
  collect = pred: attrs:
    if pred attrs then [ attrs ]
    else if isAttrs attrs then lib.concatMap (collect pred) (attrValues attrs)
    else [ ];
  mapAttrs' = f: set: listToAttrs (map (attr: f attr set.${attr}) (attrNames set));
  mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (attrNames attrs);
  attrsToList = mapAttrsToList nameValuePair;
  concatMapAttrs = f: v:
    foldl' (a: b: a // b) { } (attrValues (mapAttrs f v));
  mapAttrsRecursive = mapAttrsRecursiveCond (_: true);
  mapAttrsRecursiveCond = cond: f: set:
    let
      recurse = path: mapAttrs (name: value:
        if isAttrs value && cond value
        then recurse (path ++ [ name ]) value
        else f (path ++ [ name ]) value);
    in recurse [ ] set;
  genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
  isDerivation = value: isAttrs value && (value.type or null) == "derivation";
  optionalAttrs = cond: as: if cond then as else { };
  zipAttrsWithNames = names: f: sets:
    listToAttrs (map (name: {
      inherit name;
      value = f name (lib.catAttrs name sets);
    }) names);
  zipAttrsWith = builtins.zipAttrsWith
    or (f: sets: zipAttrsWithNames (lib.unique (lib.concatMap attrNames sets)) f sets);
  zipAttrs = zipAttrsWith (name: values: values);
  recursiveUpdateUntil = pred: lhs: rhs:
    let
      f = attrPath: zipAttrsWith (n: values:
        let here = attrPath ++ [ n ]; in
        if length values == 1
          || pred here (elemAt values 1) (head values)
        then head values
        else f here values);
    in f [ ] [ rhs lhs ];
  recursiveUpdate = recursiveUpdateUntil (path: lhs: rhs: !(isAttrs lhs && isAttrs rhs));
  matchAttrs = pattern: attrs:
    lib.all (n: attrs ? ${n} && (let p = pattern.${n}; v = attrs.${n}; in
      if isAttrs p && isAttrs v then matchAttrs p v else p == v)) (attrNames pattern);
  unionOfDisjoint = x: y:
    let common = builtins.intersectAttrs x y; in
    if common == { } then x // y
    else throw "unionOfDisjoint: collision on ${lib.concatStringsSep ", " (attrNames common)}";
  recurseIntoAttrs = attrs: attrs // { recurseForDerivations = true; };
}
