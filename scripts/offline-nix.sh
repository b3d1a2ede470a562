# shellcheck shell=bash
# Sourced by the test, demo and bench scripts: the deploying side's Nix as the
# tests use it. Offline (nothing may be substituted), and the stand-in
# nixpkgs' builder, Debian's static /bin/busybox, visible inside Nix's build
# sandbox. `sandbox = relaxed` lets the stand-in's disk images
# (nixos/lib/make-disk-image.nix), which ask for `__noChroot`, be built from
# this machine's Debian packages outside the sandbox; every other derivation
# is still built in it. tests/common/mod.rs passes the same setting to every
# nixops it runs.
export NIX_CONFIG=$'substituters =\nextra-sandbox-paths = /bin/busybox\nsandbox = relaxed'
