//! Machines NixOps made at a provider keep deploying from their NixOps
//! state alone: for each backend (gce, hetzner, hetznercloud, droplet /
//! digitalOcean, virtualbox), a state file as NixOps left it (its attribute
//! names, the client key it generated, the host key it pinned) whose
//! address is a test host on 127.0.0.1 (its port given as
//! deployment.targetPort, which NixOps honours for every backend). The
//! hosts accept only the state's keys, and the deploying side has no ssh
//! configuration or known hosts: deploy, ssh and check work; each system
//! holds what the backend's physical spec adds (the expected values are
//! derived from reading each backend's get_physical_spec and Nix module,
//! since their plugins cannot be installed here to compare with); what
//! needs the provider's API refuses and leaves state as it was.

mod common;

use std::path::Path;
use std::process::Command;

use common::Fleet;

const UUID: &str = "5c1c5a10-9d3e-11ee-8f0a-0242ac120002";

/// A resource's attributes in state.
type Attrs<'a> = Vec<(&'a str, String)>;

const HOSTS: [&str; 5] = ["gce1", "hz1", "hc1", "do1", "vb1"];

/// A fresh ed25519 key pair (private, public), as NixOps' create_key_pair.
fn key_pair(dir: &Path, name: &str) -> (String, String) {
    let file = dir.join(format!("client-{name}"));
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            &format!("NixOps client key of {name}"),
            "-f",
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let private = std::fs::read_to_string(&file).unwrap();
    let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
    std::fs::remove_file(&file).unwrap();
    (private, public.trim_end().to_owned())
}

fn host_key(fleet: &Fleet, host: &str) -> String {
    std::fs::read_to_string(
        fleet
            .path()
            .join("hosts")
            .join(host)
            .join("ssh_host_ed25519_key.pub"),
    )
    .unwrap()
    .trim_end()
    .to_owned()
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The network: each machine as its backend's network declares it.
fn network(fleet: &Fleet) -> String {
    let port = |h: &str| fleet.port(h);
    format!(
        r#"{{
  network.description = "clouds";
  resources.sshKeyPairs.ssh-key = {{ }};
  resources.gceDisks.data = {{ region = "europe-west1-b"; size = 10; }};
  resources.hetznerCloudVolumes.vol = {{ location = "nbg1"; size = 10; }};
  gce1 = {{ resources, ... }}: {{
    deployment.targetEnv = "gce";
    deployment.targetPort = {};
    deployment.gce = {{ region = "europe-west1-b"; instanceType = "n1-standard-1"; project = "p"; }};
    fileSystems."/data".gce.disk = resources.gceDisks.data;
  }};
  hz1 = {{
    deployment.targetEnv = "hetzner";
    deployment.targetPort = {};
    deployment.hetzner.mainIPv4 = "127.0.0.1";
  }};
  hc1 = {{ resources, ... }}: {{
    deployment.targetEnv = "hetznercloud";
    deployment.targetPort = {};
    deployment.hetznerCloud = {{ location = "nbg1"; serverType = "cx21"; }};
    fileSystems."/vol".hetznerCloud.volume = resources.hetznerCloudVolumes.vol;
  }};
  do1 = {{
    deployment.targetEnv = "droplet";
    deployment.targetPort = {};
    deployment.droplet = {{ region = "ams3"; size = "s-1vcpu-1gb"; }};
  }};
  vb1 = {{
    deployment.targetEnv = "virtualbox";
    deployment.targetPort = {};
    deployment.virtualbox.memorySize = 1024;
  }};
}}
"#,
        port("gce1"),
        port("hz1"),
        port("hc1"),
        port("do1"),
        port("vb1"),
    )
}

/// Writes NixOps' state: each machine with the attributes its backend
/// records; returns the gateway the Hetzner Cloud plugin sets.
fn write_state(fleet: &Fleet, net: &Path) {
    let dir = fleet.path();
    let keys: Vec<(String, String)> = HOSTS.iter().map(|h| key_pair(dir, h)).collect();
    let key = |h: &str| &keys[HOSTS.iter().position(|x| *x == h).unwrap()];
    // The hosts accept the state's client keys only (not the fleet's own).
    let authorized: String = keys.iter().map(|(_, p)| format!("{p}\n")).collect();
    std::fs::write(dir.join("authorized_keys"), authorized).unwrap();
    // No ssh configuration and no known hosts on the deploying side.
    std::fs::write(dir.join("ssh").join("config"), "").unwrap();
    std::fs::write(dir.join("ssh").join("known_hosts"), "").unwrap();

    let hw = "{ config, lib, pkgs, ... }:\n{\n  boot.kernelModules = [ \"kvm-intel\" ];\n}";
    let fs = "{\n  fileSystems.\"/\" = { device = \"/dev/md0\"; fsType = \"ext4\"; };\n}";
    let net_info = serde_json::json!({
        "services": { "udev": { "extraRules": "ACTION==\"add\", SUBSYSTEM==\"net\", ATTR{address}==\"00:11:22:33:44:55\", NAME=\"eth0\"\n" } },
        "networking": {
            "interfaces": { "eth0": { "ipv4": { "addresses": [{ "address": "127.0.0.1", "prefixLength": 8 }] }, "ipv6": { "addresses": [] } } },
            "defaultGateway": { "address": "127.0.0.2", "interface": "eth0" },
            "defaultGateway6": null,
            "nameservers": ["127.0.0.53"]
        }
    });
    let machines: Vec<(&str, &str, Attrs)> = vec![
        (
            "gce1",
            "gce",
            vec![
                ("gce.name", "n-5c1c5a109d3e11ee8f0a0242ac120002-gce1".into()),
                ("publicIpv4", "127.0.0.1".into()),
                ("gce.region", "europe-west1-b".into()),
                ("gce.instanceType", "n1-standard-1".into()),
                ("gce.privateClientKey", key("gce1").0.clone()),
                ("gce.publicClientKey", key("gce1").1.clone()),
                ("gce.publicHostKey", host_key(fleet, "gce1")),
                ("gce.blockDeviceMapping", r#"{"/dev/disk/by-id/scsi-0Google_PersistentDisk_n-x-gce1-root": {"disk_name": "root", "bootDisk": true, "encrypt": false}}"#.into()),
            ],
        ),
        (
            "hz1",
            "hetzner",
            vec![
                ("hetzner.mainIPv4", "127.0.0.1".into()),
                ("hetzner.sshPrivateKey", key("hz1").0.clone()),
                ("hetzner.sshPublicKey", key("hz1").1.clone()),
                ("hetzner.fsInfo", fs.into()),
                ("hetzner.hardwareInfo", hw.into()),
                ("hetzner.networkInfo", net_info.to_string()),
            ],
        ),
        (
            "hc1",
            "hetznercloud",
            vec![
                ("vmId", "4711".into()),
                ("publicIpv4", "127.0.0.1".into()),
                ("publicIpv6", "2001:db8::/64".into()),
                ("hetznerCloud.location", "nbg1".into()),
                ("hetznerCloud.serverType", "cx21".into()),
                ("hetznerCloud.serverName", "nixops-x-hc1".into()),
                ("hetznerCloud.privateClientKey", key("hc1").0.clone()),
                ("hetznerCloud.publicClientKey", key("hc1").1.clone()),
                ("hetznerCloud.publicHostKey", host_key(fleet, "hc1")),
                ("hetznerCloud.volumes", r#"{"nixops-x-vol": {"volume": "nixops-x-vol", "mountPoint": "/vol", "fsType": "xfs", "device": "/dev/disk/by-id/scsi-0HC_Volume_42"}}"#.into()),
            ],
        ),
        (
            "do1",
            "droplet",
            vec![
                ("publicIpv4", "127.0.0.1".into()),
                ("netmask", "255.255.240.0".into()),
                ("defaultGateway", "127.0.0.3".into()),
                ("droplet.region", "ams3".into()),
                ("droplet.size", "s-1vcpu-1gb".into()),
                ("droplet.dropletId", "12345".into()),
            ],
        ),
        (
            "vb1",
            "virtualbox",
            vec![
                ("vmId", "nixops-x-vb1".into()),
                ("privateIpv4", "127.0.0.1".into()),
                ("virtualbox.clientPrivateKey", key("vb1").0.clone()),
                ("virtualbox.clientPublicKey", key("vb1").1.clone()),
                ("virtualbox.publicHostKey", host_key(fleet, "vb1")),
                ("virtualbox.disks", r#"{"disk1": {"port": 0, "size": 0}}"#.into()),
            ],
        ),
    ];
    let mut sql = format!(
        r#"{schema}
        insert into Deployments values ('{UUID}');
        insert into DeploymentAttrs values ('{UUID}', 'name', 'clouds');
        insert into DeploymentAttrs values ('{UUID}', 'nixExprs', {});
        "#,
        sql_string(&format!("[\"{}\"]", net.display())),
        schema = common::NIXOPS_SCHEMA_SQL
    );
    let mut id = 0;
    let mut resource = |sql: &mut String, name: &str, kind: &str, attrs: &[(&str, String)]| {
        id += 1;
        sql.push_str(&format!(
            "insert into Resources(id, deployment, name, type) values ({id}, '{UUID}', '{name}', '{kind}');\n"
        ));
        for (k, v) in attrs {
            sql.push_str(&format!(
                "insert into ResourceAttrs values ({id}, {}, {});\n",
                sql_string(k),
                sql_string(v)
            ));
        }
    };
    for (i, (name, kind, attrs)) in machines.iter().enumerate() {
        let mut attrs = attrs.clone();
        attrs.extend([
            ("state", "1".to_owned()),
            ("index", i.to_string()),
            ("stateVersion", "24.05".into()),
        ]);
        resource(&mut sql, name, kind, &attrs);
    }
    let (do_private, do_public) = key("do1").clone();
    resource(
        &mut sql,
        "ssh-key",
        "ssh-keypair",
        &[
            ("state", "1".into()),
            ("privateKey", do_private),
            ("publicKey", do_public),
        ],
    );
    resource(
        &mut sql,
        "data",
        "gce-disk",
        &[("state", "1".into()), ("gce.name", "n-x-data".into())],
    );
    resource(
        &mut sql,
        "vol",
        "hetznercloud-volume",
        &[
            ("state", "1".into()),
            ("hetznerCloudVolume.volumeId", "42".into()),
        ],
    );
    let st = Command::new("sqlite3")
        .arg(fleet.state_file())
        .arg(&sql)
        .status()
        .unwrap();
    assert!(st.success());
}

fn dump(fleet: &Fleet) -> String {
    let out = Command::new("sqlite3")
        .arg(fleet.state_file())
        .arg("select r.name, r.type, a.name, a.value from Resources r join ResourceAttrs a on a.machine = r.id order by 1, 3;")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn etc(fleet: &Fleet, host: &str, file: &str) -> String {
    fleet.exec(
        host,
        &format!("cat /run/current-system/etc/{file} 2>/dev/null || echo MISSING"),
    )
}

#[test]
fn cloud_machines_deploy_from_nixops_state_alone_and_what_needs_the_provider_refuses() {
    let fleet = Fleet::start(&HOSTS);
    let net = fleet.write("clouds.nix", &network(&fleet));
    write_state(&fleet, &net);

    let r = fleet.run(&["deploy", "-d", "clouds", "--confirm"]);
    assert!(r.code == 0, "{}\n{}", r.stdout, r.stderr);
    for h in HOSTS {
        let t = fleet.exported_toplevel("clouds", h).unwrap_or_default();
        assert_eq!(fleet.current_system(h), t, "{h}");
    }

    // gce: nixpkgs' google-compute-config.nix, the guest agent's setting.
    assert_eq!(
        etc(&fleet, "gce1", "nixos-stub/virtualisation/google-compute-config"),
        "imported\n"
    );
    assert_eq!(
        etc(&fleet, "gce1", "default/instance_configs.cfg"),
        "[InstanceSetup]\nset_host_keys = false"
    );
    // hetzner: the network read from the server, its hardware and file
    // systems as kept in state, the backend's module, the client key.
    let hz_net: serde_json::Value =
        serde_json::from_str(&etc(&fleet, "hz1", "nixos-stub/network.json")).unwrap();
    assert_eq!(
        hz_net["interfaces"]["eth0"]["ipv4"]["addresses"][0]["prefixLength"], 8,
        "{hz_net}"
    );
    assert_eq!(hz_net["nameservers"], serde_json::json!(["127.0.0.53"]));
    assert!(etc(&fleet, "hz1", "udev/rules.d/99-local.rules").contains("00:11:22:33:44:55"));
    assert!(etc(&fleet, "hz1", "modules-load.d/nixos.conf").contains("kvm-intel"));
    assert_eq!(
        etc(&fleet, "hz1", "modprobe.d/nixos.conf"),
        "blacklist nvidiafb\n"
    );
    // hetznercloud: qemu-guest, Hetzner Cloud's network, the volume.
    assert_eq!(etc(&fleet, "hc1", "nixos-stub/profiles/qemu-guest"), "imported\n");
    let hc: serde_json::Value = serde_json::from_str(&etc(&fleet, "hc1", "nixos-stub/network.json")).unwrap();
    let gw = std::net::Ipv4Addr::from([172, 31, 1, 1]).to_string();
    assert_eq!(hc["defaultGateway"]["address"], serde_json::json!(gw), "{hc}");
    assert_eq!(hc["defaultGateway6"]["address"], "fe80::1");
    assert_eq!(
        hc["interfaces"]["enp1s0"]["ipv4"]["addresses"][0]["address"],
        "127.0.0.1"
    );
    assert_eq!(
        hc["interfaces"]["enp1s0"]["ipv6"]["addresses"][0]["address"],
        "2001:db8::"
    );
    assert_eq!(hc["interfaces"]["enp1s0"]["useDHCP"], true);
    assert!(etc(&fleet, "hc1", "modules-load.d/nixos.conf").contains("xfs"));
    // droplet: qemu-guest, the address with the netmask's prefix.
    assert_eq!(etc(&fleet, "do1", "nixos-stub/profiles/qemu-guest"), "imported\n");
    let dn: serde_json::Value = serde_json::from_str(&etc(&fleet, "do1", "nixos-stub/network.json")).unwrap();
    assert_eq!(
        dn["interfaces"]["ens3"]["ipv4"]["addresses"][0],
        serde_json::json!({"address": "127.0.0.1", "prefixLength": 20})
    );
    assert_eq!(
        dn["nameservers"],
        serde_json::json!(["67.207.67.2", "67.207.67.3"])
    );
    // virtualbox: virtualbox-image.nix and the backend's guest module.
    assert_eq!(
        etc(&fleet, "vb1", "nixos-stub/virtualisation/virtualbox-image"),
        "imported\n"
    );
    // Each one's client key authorized for root, as the backends add it.
    for h in ["hz1", "hc1", "do1"] {
        assert!(
            etc(&fleet, h, "ssh/authorized_keys.d/root").contains("ssh-ed25519"),
            "{h}"
        );
    }
    // The option values the backends' modules and specs give.
    let opt = |m: &str, o: &str| {
        fleet
            .ok(&["show-option", "--include-physical", "-d", "clouds", m, o])
            .stdout
            .trim()
            .to_owned()
    };
    assert_eq!(opt("hz1", "fileSystems./.device"), "\"/dev/md0\"");
    assert_eq!(opt("hc1", "fileSystems./.device"), "\"/dev/sda1\"");
    assert_eq!(opt("do1", "fileSystems./.device"), "\"/dev/vda1\"");
    assert_eq!(
        opt("gce1", "fileSystems./data.device"),
        "\"/dev/disk/by-id/scsi-0Google_PersistentDisk_n-5c1c5a109d3e11ee8f0a0242ac120002-data\""
    );
    assert_eq!(opt("vb1", "deployment.hasFastConnection"), "true");

    // ssh and check reach them the same way.
    for h in HOSTS {
        let r = fleet.run(&["ssh", "-d", "clouds", h, "--", "echo", "hello-from", h]);
        assert!(
            r.code == 0 && r.stdout.contains(&format!("hello-from {h}")),
            "{h}: {}",
            r.stderr
        );
    }
    let r = fleet.run(&["check", "-d", "clouds"]);
    assert!(r.code == 0, "{}\n{}", r.stdout, r.stderr);

    // What needs the provider refuses, naming it, and changes nothing.
    let before = dump(&fleet);
    for (cmd, h, needle) in [
        ("stop", "gce1", "gcloud compute instances stop"),
        ("start", "hc1", "hcloud server poweron"),
        ("stop", "do1", "doctl compute droplet-action shutdown 12345"),
        ("start", "vb1", "VBoxManage startvm nixops-x-vb1"),
        ("start", "hz1", "Hetzner Robot"),
    ] {
        let r = fleet.run(&[cmd, "-d", "clouds", "--include", h]);
        assert!(
            r.code != 0 && r.stderr.contains(needle),
            "{cmd} {h}: {}",
            r.stderr
        );
    }
    for h in HOSTS {
        let r = fleet.run(&["destroy", "-d", "clouds", "--include", h, "--confirm"]);
        assert!(
            r.code != 0 && r.stderr.contains("cannot destroy machine"),
            "{h}: {}",
            r.stderr
        );
    }
    let r = fleet.run(&[
        "destroy",
        "-d",
        "clouds",
        "--include",
        "gce1",
        "--wipe",
        "--confirm",
    ]);
    assert!(r.code != 0, "{}", r.stderr);
    assert_eq!(dump(&fleet), before);

    // A changed size, and a machine state does not hold, refuse to deploy.
    let changed = network(&fleet).replace("s-1vcpu-1gb", "s-2vcpu-2gb").replace(
        "  vb1 = {",
        "  gce2 = { deployment.targetEnv = \"gce\"; deployment.gce.region = \"europe-west1-b\"; };\n  vb1 = {",
    );
    std::fs::write(&net, &changed).unwrap();
    let r = fleet.run(&["deploy", "-d", "clouds", "--include", "do1"]);
    assert!(
        r.code != 0 && r.stderr.contains("droplet.size") && r.stderr.contains("doctl"),
        "{}",
        r.stderr
    );
    let r = fleet.run(&["deploy", "-d", "clouds", "--include", "gce2"]);
    assert!(
        r.code != 0 && r.stderr.contains("state holds no such machine"),
        "{}",
        r.stderr
    );
    assert_eq!(dump(&fleet), before);
    std::fs::write(&net, network(&fleet)).unwrap();

    // The VM comes back with a host key other than the one state pinned:
    // refused.
    let key = fleet.path().join("hosts/vb1/ssh_host_ed25519_key");
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(key.with_extension("pub")).ok();
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    fleet.stop_host("vb1");
    fleet.start_hosts(&["vb1"]);
    let r = fleet.run(&["ssh", "--ssh-persist", "0", "-d", "clouds", "vb1", "--", "true"]);
    assert!(
        r.code != 0 && r.stderr.to_lowercase().contains("host key"),
        "{}",
        r.stderr
    );
}
