# Builds derivations in this machine's store with its own Nix: its
# substituters, its builders, its CPUs (deployment.buildOnTarget, and the
# build host of `deploy --build-host`).
#
# Arguments: ROOTS N DRV_1 ... DRV_N OPTION...
#   ROOTS  "keep": protect the outputs with indirect GC roots in a new
#          temporary directory, told as "__NIXOPS_ROOTS__ DIR", for the
#          deployer to remove once it has copied them; "none": no roots.
#   OPTION nix-store's build options (-j, --cores, --keep-going...).
# The build log goes to stderr; then "__NIXOPS_MISSING__ PATH" for every
# output that is not valid afterwards. Exit code: nix-store's.
set -f
roots=$1
n=$2
shift 2
drvs=
while [ "$n" -gt 0 ]; do
  drvs="$drvs $1"
  shift
  n=$((n - 1))
done
if ! command -v nix-store >/dev/null 2>&1; then
  echo "error: nix-store not found: this machine has no Nix to build with" >&2
  exit 127
fi
if [ "$roots" = keep ]; then
  d=$(mktemp -d "${TMPDIR:-/tmp}/nixops-build.XXXXXX") || exit 1
  echo "__NIXOPS_ROOTS__ $d"
  set -- --add-root "$d/result" --indirect "$@"
fi
# Store paths hold no white space or glob characters but `?` (set -f).
# shellcheck disable=SC2086
nix-store --realise $drvs "$@" >/dev/null
rc=$?
# shellcheck disable=SC2086
outs=$(nix-store --query --outputs $drvs) || exit 1
# shellcheck disable=SC2086
for o in $(nix-store --check-validity --print-invalid $outs); do
  echo "__NIXOPS_MISSING__ $o"
done
exit "$rc"
