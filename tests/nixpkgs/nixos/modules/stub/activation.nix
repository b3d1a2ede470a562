# Knobs of the stub OS's switch-to-configuration, for tests.
{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.stub.activation = {
    fail = mkOption {
      type = types.bool;
      default = false;
      description = "Make switch-to-configuration print an error and exit 1.";
    };
    requestReboot = mkOption {
      type = types.bool;
      default = false;
      description = "For switch/boot, exit 100 unless /run/booted-system is this toplevel.";
    };
    sleep = mkOption {
      type = types.ints.unsigned;
      default = 0;
      description = "Seconds to sleep during activation.";
    };
    killSshd = mkOption {
      type = types.bool;
      default = false;
      description = "For switch/test, kill the host's sshd during activation.";
    };
  };
}
