{ lib }:
let
  inherit (builtins) length elemAt genList filter head tail;
in
rec {
  inherit (builtins) length elemAt genList filter head tail elem any all
    concatLists sort partition groupBy;
  foldl' = builtins.foldl';
  foldl = op: nul: list: builtins.foldl' op nul list;
  foldr = op: nul: list:
    let
      len = length list;
      go = n: if n == len then nul else op (elemAt list n) (go (n + 1));
    in go 0;
  fold = foldr;
  concatMap = builtins.concatMap or (f: list: builtins.concatLists (map f list));
  flatten = x: if builtins.isList x then concatMap flatten x else [ x ];
  optional = cond: elem: if cond then [ elem ] else [ ];
  optionals = cond: elems: if cond then elems else [ ];
  toList = x: if builtins.isList x then x else [ x ];
  singleton = x: [ x ];
  forEach = xs: f: map f xs;
  imap0 = f: list: genList (n: f n (elemAt list n)) (length list);
  imap1 = f: list: genList (n: f (n + 1) (elemAt list n)) (length list);
  ifilter0 = ipred: input:
    map (i: elemAt input i)
      (filter (i: ipred i (elemAt input i)) (genList (x: x) (length input)));
  count = pred: builtins.foldl' (c: x: if pred x then c + 1 else c) 0;
  last = list:
    assert lib.assertMsg (list != [ ]) "lists.last: list must not be empty!";
    elemAt list (length list - 1);
  init = list:
    assert lib.assertMsg (list != [ ]) "lists.init: list must not be empty!";
    take (length list - 1) list;
  take = n: sublist 0 n;
  drop = n: list: sublist n (length list) list;
  sublist = start: count: list:
    let
      len = length list;
      n = if start >= len then 0
          else if start + count > len then len - start
          else count;
    in genList (i: elemAt list (start + i)) (if n < 0 then 0 else n);
  range = first: last:
    if first > last then [ ] else genList (n: first + n) (last - first + 1);
  reverseList = xs: let l = length xs; in genList (n: elemAt xs (l - n - 1)) l;
  unique = builtins.foldl' (acc: e: if builtins.elem e acc then acc else acc ++ [ e ]) [ ];
  remove = e: filter (x: x != e);
  subtractLists = e: filter (x: !(builtins.elem x e));
  intersectLists = e: filter (x: builtins.elem x e);
  mutuallyExclusive = a: b: length a == 0 || !(builtins.any (x: builtins.elem x a) b);
  findFirst = pred: default: list:
    let found = filter pred list; in if found == [ ] then default else head found;
  findSingle = pred: default: multiple: list:
    let found = filter pred list; n = length found; in
    if n == 0 then default else if n != 1 then multiple else head found;
  zipListsWith = f: fst: snd:
    genList (n: f (elemAt fst n) (elemAt snd n))
      (lib.trivial.min (length fst) (length snd));
  zipLists = zipListsWith (fst: snd: { inherit fst snd; });
  intersperse = sep: list:
    if list == [ ] || length list == 1 then list
    else tail (concatMap (x: [ sep x ]) list);
  allUnique = list: length (unique list) == length list;
  sortOn = f: sort (a: b: f a < f b);
  replicate = n: x: genList (_: x) n;
}
