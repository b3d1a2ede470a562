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
      description = ''
        For switch/test, unless /run/booted-system is this toplevel, exit 100
        without activating (after updating the boot default for switch), as
        NixOS' switch-to-configuration does when a change needs a reboot.
      '';
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
    # The two knobs below behave as NixOS' own switch-to-configuration does.
    initInterfaceVersion = mkOption {
      type = types.str;
      default = "stub 1";
      description = ''
        Written to the toplevel's init-interface-version. For switch/test, when
        /run/current-system's differs, switch-to-configuration exits 100
        without activating ("won't take effect until you reboot"), as NixOS'
        does when systemd's interface changed.
      '';
    };
    failedUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        For switch/test, activate, then report these units as failed and exit
        4, as NixOS' switch-to-configuration does when units fail to start.
      '';
    };
  };
}
