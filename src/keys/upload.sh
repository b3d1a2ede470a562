# Delivers a machine's deployment.keys in one session, as root (POSIX sh,
# with coreutils or busybox). deliver.rs writes what it reads.
#
# stdin: first a manifest, one record per line, then the keys' bytes:
#   nixops-keys 1                  the format (first line)
#   done                           touch /run/keys/done at the end
#   dir PATH                       a destDir; the first is dir 0, then 1, ...
#   key DIR SIZE MODE USER:GROUP NAME
#                                  a key of SIZE bytes, file NAME in dir DIR
#   remove PATH                    a key file no longer declared
#   end
# then SIZE bytes for each key line, in order. No field holds a control
# character; PATH and NAME (the rest of their line) may hold spaces.
#
# Every key goes into a fresh file in a private temporary directory inside
# its destDir, owned and moded *before* any byte is written; only once all
# keys arrived whole are they renamed into place. A USER:GROUP that does not
# exist (yet) is reported on stdout as "__NIXOPS_KEYS_NO_OWNER USER:GROUP";
# its keys stay root's.
set -eu
umask 022

fail() { echo "error: $*" >&2; exit 1; }

# The manifest's lists, as numbered variables (POSIX sh has no arrays):
# dir_J, tmp_J, total_J; kdir_I, ksize_I, kmode_I, kowner_I, kname_I; rm_I.
# Only our own counters are ever part of a variable's name.
put() { eval "$1=\$2"; }
get() { eval "$1=\$$2"; }
# What get sets.
d='' j='' n='' p='' size='' t='' v='' w=''
number() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }

IFS= read -r line || fail "no manifest on stdin"
[ "$line" = "nixops-keys 1" ] || fail "unexpected manifest format: $line"
touch_done=0 ndirs=0 nkeys=0 nrm=0
while :; do
  IFS= read -r line || fail "the manifest ended early"
  case $line in
    end) break ;;
    done) touch_done=1 ;;
    "dir "*)
      put "dir_$ndirs" "${line#dir }"
      put "total_$ndirs" 0
      ndirs=$((ndirs + 1)) ;;
    "key "*)
      # key DIR SIZE MODE OWNER NAME: four words, then the rest.
      rest=${line#key }
      for f in dir size mode owner; do
        case $rest in *" "*) ;; *) fail "bad manifest line: $line" ;; esac
        put "k${f}_$nkeys" "${rest%% *}"
        rest=${rest#* }
      done
      put "kname_$nkeys" "$rest"
      get j "kdir_$nkeys"
      get size "ksize_$nkeys"
      if ! number "$j" || ! number "$size" || [ "$j" -ge "$ndirs" ]; then
        fail "bad manifest line: $line"
      fi
      get t "total_$j"
      put "total_$j" $((t + size))
      nkeys=$((nkeys + 1)) ;;
    "remove "*)
      put "rm_$nrm" "${line#remove }"
      nrm=$((nrm + 1)) ;;
    *) fail "bad manifest line: $line" ;;
  esac
done

# A missing destDir is created 0750, root:keys where that group exists.
mkd() { [ -d "$1" ] && return 0; mkdir -p -- "$1"; chmod 0750 -- "$1"; chown root:keys -- "$1" 2>/dev/null || true; }

# Sets f to key $1's file in its temporary directory (with its final name,
# so that one mv per directory moves them all into place).
keyfile() {
  get j "kdir_$1"
  get t "tmp_$j"
  get n "kname_$1"
  f=$t/$n
}

# by FIELD FUNC: for each value V of the keys' FIELD, FUNC V FILE... over
# the files of the keys with that value (one command per value, not per key).
nl='
'
by() {
  seen=$nl
  i=0
  while [ "$i" -lt "$nkeys" ]; do
    get v "k$1_$i"
    i=$((i + 1))
    case $seen in *"$nl$v$nl"*) continue ;; esac
    seen=$seen$v$nl
    with "$1" "$v" "$2"
  done
}
with() {
  field=$1 value=$2 func=$3
  set --
  g=0
  while [ "$g" -lt "$nkeys" ]; do
    get w "k${field}_$g"
    if [ "$w" = "$value" ]; then
      keyfile "$g"
      set -- "$@" "$f"
    fi
    g=$((g + 1))
  done
  "$func" "$value" "$@"
}

cleanup() {
  i=0
  while [ "$i" -lt "$ndirs" ]; do
    get t "tmp_$i"
    [ -z "$t" ] || rm -rf -- "$t"
    i=$((i + 1))
  done
}

[ "$touch_done" = 0 ] || mkd /run/keys
i=0
while [ "$i" -lt "$ndirs" ]; do put "tmp_$i" ""; i=$((i + 1)); done
trap cleanup EXIT
i=0
while [ "$i" -lt "$ndirs" ]; do
  get d "dir_$i"
  mkd "$d"
  # Private (0700, root), beside the keys, so that the renames are atomic.
  put "tmp_$i" "$(mktemp -d "$d/.nixops-keys.XXXXXX")"
  i=$((i + 1))
done

umask 077
# Empty files first; owner and mode are set before any byte is written.
i=0
while [ "$i" -lt "$nkeys" ]; do
  keyfile "$i"
  : > "$f"
  i=$((i + 1))
done
own() {
  o=$1
  shift
  [ "$o" != root:root ] || return 0
  chown -- "$o" "$@" 2>/dev/null || echo "__NIXOPS_KEYS_NO_OWNER $o"
}
mode() {
  m=$1
  shift
  chmod -- "$m" "$@"
}
by owner own
by mode mode

# The bytes: exactly SIZE from stdin each (dd with fullblock never reads
# past them).
i=0
while [ "$i" -lt "$nkeys" ]; do
  get size "ksize_$i"
  if [ "$size" -gt 0 ]; then
    keyfile "$i"
    dd bs="$size" count=1 iflag=fullblock status=none of="$f"
  fi
  i=$((i + 1))
done
whole() {
  get t "total_$1"
  shift
  [ $(($(cat -- "$@" | wc -c))) -eq "$t" ] || fail "the keys arrived incomplete"
}
by dir whole
move() {
  get d "dir_$1"
  shift
  mv -f -- "$@" "$d/"
}
by dir move

set --
i=0
while [ "$i" -lt "$nrm" ]; do
  get p "rm_$i"
  set -- "$@" "$p"
  i=$((i + 1))
done
[ "$#" -eq 0 ] || rm -f -- "$@"

if [ "$touch_done" = 1 ]; then
  umask 022
  touch /run/keys/done
fi
