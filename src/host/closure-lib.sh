# closure PATH: a line "NARSIZE PATH" for every store path in PATH's
# closure (PATH included), two Nix processes in all (more only for closures
# too long for one command line). Run on machines and on the deployer alike.
closure() {
  # shellcheck disable=SC2016 # the inner script expands its own "$@"
  nix-store --query --requisites "$1" |
    xargs sh -c 'nix-store --query --size "$@" | for p in "$@"; do read -r s && echo "$s $p"; done' sh
}
