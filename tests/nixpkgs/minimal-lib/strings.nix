{ lib }:
let
  inherit (builtins) substring stringLength concatStringsSep replaceStrings
    match isString isPath filter split head genList elemAt length;
in
rec {
  inherit (builtins) stringLength substring concatStringsSep replaceStrings
    match split toString;
  concatStrings = concatStringsSep "";
  concatMapStrings = f: list: concatStrings (map f list);
  concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
  concatImapStrings = f: list: concatStrings (lib.lists.imap1 f list);
  concatImapStringsSep = sep: f: list: concatStringsSep sep (lib.lists.imap1 f list);
  concatLines = list: concatStrings (map (s: s + "\n") list);
  optionalString = cond: string: if cond then string else "";
  hasPrefix = pref: str: substring 0 (stringLength pref) str == pref;
  hasSuffix = suffix: content:
    let lenC = stringLength content; lenS = stringLength suffix; in
    lenC >= lenS && substring (lenC - lenS) lenS content == suffix;
  hasInfix = infix: content:
    builtins.match ".*${escapeRegex infix}.*" "${content}" != null;
  removePrefix = prefix: str:
    if hasPrefix prefix str
    then substring (stringLength prefix) (stringLength str - stringLength prefix) str
    else str;
  removeSuffix = suffix: str:
    if hasSuffix suffix str
    then substring 0 (stringLength str - stringLength suffix) str
    else str;
  stringToCharacters = s: genList (p: substring p 1 s) (stringLength s);
  escape = list: replaceStrings list (map (c: "\\${c}") list);
  escapeRegex = escape (stringToCharacters "\\[{()^$?*+|.");
  splitString = sep: s:
    let parts = split (escapeRegex (toString sep)) (toString s);
    in map (v: substring 0 (stringLength v) v) (filter isString parts);
  toLower = replaceStrings upperChars lowerChars;
  toUpper = replaceStrings lowerChars upperChars;
  lowerChars = stringToCharacters "abcdefghijklmnopqrstuvwxyz";
  upperChars = stringToCharacters "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  fixedWidthString = width: filler: str:
    let strw = stringLength str; in
    if strw >= width then str else fixedWidthString width filler (filler + str);
  fixedWidthNumber = width: n: fixedWidthString width "0" (toString n);
  trim = s:
    let m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s;
    in if m == null then "" else head m;
  isStringLike = x: isString x || isPath x || (builtins.isAttrs x && (x ? outPath || x ? __toString));
  isStorePath = x:
    if isStringLike x then
      let str = toString x; in
      substring 0 1 str == "/" && dirOf str == builtins.storeDir
    else false;
  makeSearchPath = subDir: paths:
    concatStringsSep ":" (map (p: "${toString p}/${subDir}") (filter (x: x != null) paths));
  makeBinPath = makeSearchPath "bin";
  makeLibraryPath = makeSearchPath "lib";
  fileContents = file: removeSuffix "\n" (builtins.readFile file);
  escapeShellArg = arg:
    let s = toString arg; in
    if match "[[:alnum:],._+:@%/-]+" s == null
    then "'${replaceStrings [ "'" ] [ "'\\''" ] s}'"
    else s;
  escapeShellArgs = concatMapStringsSep " " escapeShellArg;
  escapeNixString = s: escape [ "$" ] (builtins.toJSON s);
  escapeNixIdentifier = s:
    if match "[a-zA-Z_][a-zA-Z0-9_'-]*" s != null then s else escapeNixString s;
  toShellVar = name: value: "${name}=${escapeShellArg value}";
  stringAsChars = f: s: concatStrings (map f (stringToCharacters s));
  versionOlder = v1: v2: builtins.compareVersions v2 v1 == 1;
  versionAtLeast = v1: v2: !(versionOlder v1 v2);
  toInt = s:
    let m = match "[[:space:]]*(-?[0-9]+)[[:space:]]*" s; in
    if m == null then throw "Could not convert ${s} to int." else builtins.fromJSON (head m);
  # strings-with-deps (used for activation scripts)
  stringAfter = deps: text: { inherit text deps; };
  noDepEntry = text: { inherit text; deps = [ ]; };
  fullDepEntry = text: deps: { inherit text deps; };
  # Each named entry's text once, after those of its deps (names in
  # `predefined`), as nixpkgs' lib orders activation snippets.
  textClosureMap = f: predefined: names:
    let
      visit = acc: name:
        if builtins.elem name acc.done then acc
        else
          let deps = builtins.foldl' visit (acc // { done = acc.done ++ [ name ]; }) predefined.${name}.deps;
          in deps // { texts = deps.texts ++ [ (f predefined.${name}.text) ]; };
    in
    concatStringsSep "\n" (builtins.foldl' visit { done = [ ]; texts = [ ]; } names).texts;
}
