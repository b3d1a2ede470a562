//! The tool's Nix code as real NixOS meets it: nixpkgs' real module system
//! (tests/nixpkgs/lib, see link-lib.sh), an OS whose top level is free-form,
//! machine names that are no host names, and the module system's own error
//! messages passed through unchanged.

mod common;

use common::Fleet;

#[test]
fn keys_on_an_os_with_a_free_form_top_level() {
    let fleet = Fleet::start(&["ff"]);
    // An OS whose top level is free-form: any attribute is accepted, and
    // systemd.* is not declared (the stand-in's systemd module is left out).
    // Reading config.deployment.keys then needs every module's top-level
    // attributes known first, so the keys module must not make its
    // attributes depend on the keys (it did: infinite recursion).
    let free_form = r#"defaults = { lib, ... }: {
            disabledModules = [ <nixpkgs/nixos/modules/system/boot/systemd.nix> ];
            freeformType = lib.types.attrsOf lib.types.anything;
          };"#;
    fleet.create(
        "d",
        &format!(
            r#"{{
          {free_form}
          ff = {{ ... }}: {{
            deployment.keys.token.text = "tok-4711";
            deployment.keys.cert = {{ text = "cert-0815"; uploadAt = "post-activation"; }};
            my.own.setting = "accepted: the top level is free-form";
          }};
        }}"#
        ),
    );
    let r = fleet.ok(&["deploy"]);
    assert!(!r.stderr.contains("infinite recursion"), "{}", r.stderr);
    let c = fleet.config_json("ff");
    let units: Vec<&str> = c["systemdServices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for u in ["token-key", "cert-key", "nixops-keys"] {
        assert!(units.contains(&u), "{u} missing from {units:?}");
    }
    assert_eq!(fleet.exec("ff", "cat /run/keys/token"), "tok-4711");
    assert_eq!(fleet.exec("ff", "cat /run/keys/cert"), "cert-0815");

    // No keys: no key units either, and still no recursion.
    fleet.write(
        "d.nix",
        &format!("{{ {free_form} ff = {{ ... }}: {{ my.own.setting = 1; }}; }}"),
    );
    fleet.ok(&["deploy"]);
    assert_eq!(fleet.config_json("ff")["systemdServices"], serde_json::json!([]));
}
