# The deployment.* options every machine of a network gets, with NixOps'
# names, types and defaults. Uses only nixpkgs' lib, so it evaluates against
# real nixpkgs and against the test suite's stand-in alike.
{ config, lib, name, ... }:
let
  inherit (lib) mkOption types;
  keyOptions = { name, config, ... }: {
    options = {
      name = mkOption { type = types.str; default = name; description = "File name of the key on the target."; };
      text = mkOption { type = types.nullOr types.str; default = null; description = "The secret itself."; };
      # A path literal stays a path name: toString keeps it out of the store.
      keyFile = mkOption { type = types.nullOr types.path; default = null; apply = v: if v == null then null else toString v; description = "A file on the deploying machine holding the secret, read at deploy time."; };
      keyCommand = mkOption { type = types.nullOr (types.listOf types.str); default = null; description = "A command run on the deploying machine whose stdout is the secret."; };
      keyCommandTimeout = mkOption { type = types.int; default = 60; description = "Seconds the keyCommand may take; then it and every process it started are ended and the machine fails."; };
      destDir = mkOption { type = types.str; default = "/run/keys"; description = "Directory on the target the key is written to."; };
      user = mkOption { type = types.str; default = "root"; description = "Owner of the key file."; };
      group = mkOption { type = types.str; default = "root"; description = "Group of the key file."; };
      permissions = mkOption { type = types.str; default = "0600"; description = "Mode of the key file."; };
      uploadAt = mkOption { type = types.enum [ "pre-activation" "post-activation" ]; default = "pre-activation"; description = "When the key is sent."; };
      # As in NixOps and Colmena: services refer to `deployment.keys.<name>.path`,
      # and it is their very string (a destDir ending in / gives //), since a
      # system that uses it must be theirs byte for byte.
      path = mkOption {
        type = types.str;
        default = "${config.destDir}/${config.name}";
        readOnly = true;
        description = "Where the key is on the target: destDir/name.";
      };
    };
  };
  checkTiming = {
    description = mkOption { type = types.str; default = ""; description = "What the check checks, for messages."; };
    period = mkOption { type = types.int; default = 2; description = "Seconds between attempts."; };
    timeout = mkOption { type = types.int; default = 30; description = "Seconds after activation until the check counts as failed."; };
  };
  cmdCheck = { options = checkTiming // {
    cmd = mkOption { type = types.listOf types.str; description = "Command (argv) run on the machine; exit code 0 is healthy."; };
  }; };
  httpCheck = { options = checkTiming // {
    scheme = mkOption { type = types.enum [ "http" "https" ]; default = "http"; description = "URL scheme."; };
    host = mkOption { type = types.nullOr types.str; default = null; description = "Host to ask (default: deployment.targetHost)."; };
    port = mkOption { type = types.int; default = 80; description = "Port."; };
    path = mkOption { type = types.str; default = "/"; description = "Path; a 2xx answer is healthy."; };
  }; };
in
{
  # For error messages: the file itself is in a temporary directory.
  _file = "<nixops>/options.nix";

  options = {
    deployment.name = mkOption { type = types.str; internal = true; description = "Name of the deployment."; };
    deployment.uuid = mkOption { type = types.str; internal = true; description = "UUID of the deployment."; };
    deployment.arguments = mkOption { type = types.attrs; default = { }; internal = true; description = "Arguments of the deployment."; };
    deployment.targetEnv = mkOption { type = types.str; default = "none"; description = "Kind of machine: its backend (src/backend/; `nixops list-plugins` lists them)."; };
    deployment.targetHost = mkOption { type = types.nullOr types.str; description = "Host name or address used to reach the machine; null (as in Colmena): the machine is deployed only on itself, with `nixops apply-local`, and skipped by every deploy over SSH."; };
    deployment.targetPort = mkOption { type = types.nullOr types.int; default = null; description = "SSH port; null lets ssh's own configuration decide."; };
    deployment.targetUser = mkOption { type = types.nullOr types.str; default = "root"; description = "SSH user; null (as in Colmena): ssh's own configuration chooses."; };
    deployment.sshOptions = mkOption { type = types.listOf types.str; default = [ ]; description = "Extra arguments for ssh."; };
    deployment.privilegeEscalationCommand = mkOption { type = types.listOf types.str; default = [ "sudo" "-H" "--" ]; description = "Prefix for remote commands when targetUser is not root."; };
    deployment.alwaysActivate = mkOption { type = types.bool; default = true; description = "Activate even when the machine already runs the new system and boots it (`nixops plan` shows which machines a deploy would activate)."; };
    deployment.hasFastConnection = mkOption { type = types.bool; default = false; description = "Copy everything from the deployer instead of letting the target use substitutes."; };
    deployment.magicRollback = mkOption { type = types.bool; default = true; description = "Activate under a guard on the machine that goes back to the previous system unless the deployer confirms over a new SSH connection (switch and test)."; };
    deployment.confirmTimeout = mkOption { type = types.int; default = 30; description = "Seconds the guard waits for the confirmation (after health checks)."; };
    deployment.healthChecks.cmd = mkOption { type = types.listOf (types.submodule cmdCheck); default = [ ]; description = "Commands run on the machine after activation, retried until healthy or timed out."; };
    deployment.healthChecks.http = mkOption { type = types.listOf (types.submodule httpCheck); default = [ ]; description = "HTTP requests made from the deployer after activation, retried until healthy or timed out."; };
    deployment.tags = mkOption { type = types.listOf types.str; default = [ ]; description = "Tags for selecting machines with @tag in --include, --exclude and --on."; };
    deployment.owners = mkOption { type = types.listOf types.str; default = [ ]; description = "E-mail addresses of the machine's owners."; };
    deployment.provisionSSHKey = mkOption { type = types.bool; default = true; description = "Kept for NixOps compatibility."; };
    deployment.allowLocalDeployment = mkOption { type = types.bool; default = false; description = "The machine may be deployed on itself with `nixops apply-local` (as Colmena's `apply-local`, which refuses it otherwise)."; };
    deployment.buildOnTarget = mkOption { type = types.bool; default = false; description = "Build the system on the machine itself, by its Nix with its substituters: the deployer copies the derivation there instead of the built system."; };
    deployment.replaceUnknownProfiles = mkOption { type = types.bool; default = true; description = "false (as in Colmena): activate only over a system this deployer knows (it is in the deploying machine's store, or this deployment deployed it); `--force-replace-unknown-profiles` overrides it."; };
    deployment.keys = mkOption { type = types.attrsOf (types.either types.str (types.submodule keyOptions)); default = { }; description = "Secrets sent to the machine outside the Nix store."; };
    networking.privateIPv4 = mkOption { type = types.nullOr types.str; default = null; description = "Address of the machine within the network."; };
    networking.publicIPv4 = mkOption { type = types.nullOr types.str; default = null; description = "Public address of the machine."; };
  };
}
