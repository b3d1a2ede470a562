# The fallback for nixpkgs' `lib` where the real one is not found (see
# ../link-lib.sh): a small subset with the same names and meanings.  Each sub-file takes `{ lib }` and returns an attrset whose
# attribute *names* never depend on `lib`, so the knot below is lazy enough.
let
  sub = {
    trivial = import ./trivial.nix { inherit lib; };
    lists = import ./lists.nix { inherit lib; };
    strings = import ./strings.nix { inherit lib; };
    attrsets = import ./attrsets.nix { inherit lib; };
    generators = import ./generators.nix { inherit lib; };
    options = import ./options.nix { inherit lib; };
    modules = import ./modules.nix { inherit lib; };
    types = import ./types.nix { inherit lib; };
  };

  lib = sub
    // sub.trivial
    // sub.lists
    // sub.strings
    // sub.attrsets
    // sub.options
    // sub.modules
    // {
      inherit (sub.types) mkOptionType isType isOptionType;
      inherit (builtins)
        attrNames attrValues hasAttr getAttr isAttrs isList isString isInt
        isFloat isBool toJSON fromJSON readFile pathExists tryEval typeOf
        toString length elemAt genList listToAttrs intersectAttrs removeAttrs
        catAttrs filter elem any all concatLists match split replaceStrings
        stringLength substring baseNameOf dirOf seq deepSeq trace
        addErrorContext;
      # builtins.isPath exists in every Nix we care about; keep a fallback.
      isPath = builtins.isPath or (x: builtins.typeOf x == "path");
    };
in
lib
