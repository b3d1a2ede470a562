//! targetEnv "ec2": an EC2 instance that NixOps' AWS plugin (nixops-aws)
//! created, adopted from what state recorded of it. It is reached as the
//! plugin reaches it (its public address, or its private one with
//! `ec2.usePrivateIpAddress`; the private key of its key pair, kept in
//! state by the `ec2-keypair` resource of the same name, or the file
//! `ec2.privateKeyFile`; the host key NixOps pinned), and deployed with the
//! physical spec the plugin gives it. What needs the AWS API (a new
//! instance, start, stop, destroy, backups, a changed instance type or
//! other attribute of the instance) is refused, saying what to do instead.

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use super::{Backend, Def, Power, Reach, ResourceType, Spec};
use crate::network::MachineInfo;
use crate::state::{Deployment, Resource, machine_state};

pub struct Ec2;

/// The plugin's path of the NixOS module every EC2 machine imports.
const AMAZON_IMAGE: &str = "nixos/modules/virtualisation/amazon-image.nix";

/// What to do instead of what needs the AWS API.
const INSTEAD: &str = "use the AWS console or the aws CLI (or Terraform/OpenTofu), or NixOps with nixops-aws";

impl Backend for Ec2 {
    fn target_env(&self) -> &'static str {
        "ec2"
    }

    fn describe(&self) -> &'static str {
        "an EC2 instance made by NixOps' AWS plugin (targetEnv \"ec2\")"
    }

    fn options_nix(&self) -> &'static str {
        include_str!("ec2.nix")
    }

    fn makes_new(&self) -> bool {
        false
    }

    fn show_type(&self, r: &Resource) -> String {
        match (
            r.get("ec2.zone").or(r.get("ec2.region")),
            r.get("ec2.instanceType"),
        ) {
            (Some(place), Some(t)) if !place.is_empty() => format!("ec2 [{place}; {t}]"),
            (Some(place), None) if !place.is_empty() => format!("ec2 [{place}; None]"),
            _ => "ec2".into(),
        }
    }

    fn resource_id(&self, r: &Resource) -> Option<String> {
        r.get("vmId").map(str::to_owned)
    }

    fn reach(
        &self,
        d: &Deployment,
        machine: &str,
        info: &MachineInfo,
        state: Option<&Resource>,
    ) -> Result<Reach> {
        let r = state.ok_or_else(|| not_in_state(machine))?;
        let private = flag(r, "ec2.usePrivateIpAddress", false);
        let (attr, which) = if private {
            ("privateIpv4", "a private")
        } else {
            ("publicIpv4", "a public")
        };
        let host = r.get(attr).filter(|a| !a.is_empty()).ok_or_else(|| {
            anyhow!("EC2 machine ‘{machine}’ has no {which} IPv4 address in state (state attribute {attr})")
        })?;
        // As the plugin: the private key file the network names (which it
        // records as ec2.privateKeyFile on every deploy), else the one
        // state recorded, else the key of the key pair resource of the
        // instance's key pair, if it is up.
        let named_file = info
            .backend
            .as_ref()
            .and_then(|b| b.get("privateKey"))
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty())
            .or(r.get("ec2.privateKeyFile").filter(|f| !f.is_empty()));
        let private_key = match (named_file, r.get("ec2.keyPair")) {
            (Some(_), _) | (None, None) => None,
            (None, Some(pair)) => d
                .resources
                .values()
                .filter(|k| k.kind == "ec2-keypair" && !k.obsolete())
                .find(|k| k.state() == machine_state::UP && k.get("ec2.keyPairName") == Some(pair))
                .and_then(|k| k.get("privateKey"))
                .map(str::to_owned),
        };
        Ok(Reach {
            host: host.to_owned(),
            port: super::none::port(machine, info.target_port)?,
            user: info.target_user.clone(),
            private_key,
            private_key_file: named_file.map(str::to_owned),
            host_key: r.get(self.host_key_attr()).map(str::to_owned),
        })
    }

    fn physical(&self, _d: &Deployment, r: &Resource) -> Result<Spec> {
        // LUKS passphrases NixOps generated (never given in the network)
        // come back from state, above any definition but a forced one.
        let mapping: serde_json::Map<String, Value> = match r.get("ec2.blockDeviceMapping") {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| anyhow!("state attribute ec2.blockDeviceMapping is not a JSON object: {e}"))?,
            None => Default::default(),
        };
        let mut defs = vec![Def::new(&["deployment", "ec2", "blockDeviceMapping"], json!({}))];
        for (stored, v) in &mapping {
            let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
            let generated = text("generatedKey");
            let luks = v.get("encryptionType").and_then(Value::as_str).unwrap_or("luks") == "luks";
            if truthy(v.get("encrypt")) && luks && text("passphrase").is_empty() && !generated.is_empty() {
                let device = stored.replace("/dev/sd", "/dev/xvd");
                let path = ["deployment", "ec2", "blockDeviceMapping", &device, "passphrase"];
                defs.push(Def {
                    priority: Some(10),
                    ..Def::new(&path, json!(generated))
                });
            }
        }
        // The plugin's own expression: the instance id, else whether its
        // virtualization type is unknown.
        let instance_id = match r.get("vmId").filter(|v| !v.is_empty()) {
            Some(id) => json!(id),
            None => json!(r.get("ec2.virtualizationType").is_none()),
        };
        // A generated passphrase is a secret: the spec then goes to Nix
        // in a private file.
        let secret = defs.len() > 1;
        Ok(Spec {
            imports: vec![AMAZON_IMAGE.to_owned()],
            modules: Vec::new(),
            defs: defs
                .into_iter()
                .chain([Def::new(&["deployment", "ec2", "instanceId"], instance_id)])
                .collect(),
            secret,
        })
    }

    fn nixops_host_key(&self, r: &Resource) -> Option<String> {
        r.get("ec2.publicHostKey")
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
    }

    fn check_deploy(&self, machine: &str, info: &MachineInfo, state: Option<&Resource>) -> Result<()> {
        let r = state.ok_or_else(|| not_in_state(machine))?;
        if r.get("vmId").is_none_or(str::is_empty) {
            bail!(
                "machine ‘{machine}’ is an EC2 machine whose instance NixOps never finished creating (state records no instance id): creating an instance needs the AWS API, which this tool does not use; {INSTEAD}, or deploy an instance made elsewhere as targetEnv \"none\""
            );
        }
        super::none::port(machine, info.target_port)?;
        let Some(wanted) = info.backend.as_ref() else {
            return Ok(());
        };
        let id = r.get("vmId").unwrap_or_default();
        let text = |k: &str| {
            wanted
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        // Each: the option, what the network says, what state recorded.
        let mut changed = Vec::new();
        let mut compare = |option: &str, now: String, recorded: Option<String>| {
            if let Some(was) = recorded
                && was != now
            {
                changed.push(format!(
                    "deployment.ec2.{option} is {now:?}, the instance's is {was:?}"
                ));
            }
        };
        compare("region", text("region"), r.get("ec2.region").map(str::to_owned));
        if !text("zone").is_empty() {
            compare("zone", text("zone"), r.get("ec2.zone").map(str::to_owned));
        }
        compare(
            "instanceType",
            text("instanceType"),
            r.get("ec2.instanceType").map(str::to_owned),
        );
        compare(
            "keyPair",
            text("keyPair"),
            r.get("ec2.keyPair").map(str::to_owned),
        );
        compare(
            "instanceProfile",
            text("instanceProfile"),
            r.get("ec2.instanceProfile").map(str::to_owned),
        );
        compare(
            "tenancy",
            text("tenancy"),
            r.get("ec2.tenancy").map(str::to_owned),
        );
        // A resource's address is known only to the plugin: the option
        // names the resource, state the address.
        if !text("elasticIPv4").starts_with("res-") {
            compare(
                "elasticIPv4",
                text("elasticIPv4"),
                Some(r.get("ec2.elasticIpv4").unwrap_or_default().to_owned()),
            );
        }
        if let (Some(now), Some(was)) = (wanted.get("securityGroups"), r.get("ec2.securityGroups"))
            && serde_json::from_str::<Value>(was).ok().as_ref() != Some(now)
        {
            changed.push(format!(
                "deployment.ec2.securityGroups is {now}, the instance's are {was}"
            ));
        }
        // Devices the network adds or leaves out (a volume to make and
        // attach, or to detach), by their names as the plugin keeps them.
        if let Some(devices) = wanted.get("devices").and_then(Value::as_array) {
            let recorded: std::collections::BTreeSet<String> = match r.get("ec2.blockDeviceMapping") {
                Some(t) => serde_json::from_str::<serde_json::Map<String, Value>>(t)
                    .map(|m| {
                        m.iter()
                            .filter(|(_, v)| !truthy(v.get("partOfImage")))
                            .map(|(k, _)| stored_device(k))
                            .collect()
                    })
                    .unwrap_or_default(),
                None => Default::default(),
            };
            let now: std::collections::BTreeSet<String> = devices
                .iter()
                .filter_map(Value::as_str)
                .map(stored_device)
                .collect();
            for d in now.difference(&recorded) {
                changed.push(format!("block device {d} is new (a volume to create and attach)"));
            }
            for d in recorded.difference(&now) {
                changed.push(format!(
                    "block device {d} is gone from the network (a volume to detach)"
                ));
            }
        }
        if !changed.is_empty() {
            bail!(
                "machine ‘{machine}’ (EC2 instance {id}): the network changes what only the AWS API can change: {}. This tool does not use the AWS API: {INSTEAD} to change the instance; or keep the options as the instance is",
                changed.join("; ")
            );
        }
        Ok(())
    }

    fn power_refusal(&self, r: &Resource, op: Power) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot {} machine ‘{}’: it is an EC2 instance ({}), whose power needs the AWS API, which this tool does not use; {INSTEAD} (e.g. ‘aws ec2 {}-instances{} --instance-ids {}’); ‘nixops reboot’ reboots it over SSH",
            op.verb(),
            r.name,
            r.get("vmId").unwrap_or("no instance id"),
            op.verb(),
            region_arg(r),
            r.get("vmId").unwrap_or("ID")
        )
    }

    fn destroy_refusal(&self, r: &Resource) -> anyhow::Error {
        anyhow::anyhow!(
            "not destroying machine ‘{}’: it is an EC2 instance ({}), and terminating it needs the AWS API, which this tool does not use; it stays in state. Terminate it with the AWS console or ‘aws ec2 terminate-instances{} --instance-ids {}’ (its EBS volumes and key pair too, if they should go), then forget it with ‘nixops delete-resources --include {}’",
            r.name,
            r.get("vmId").unwrap_or("no instance id"),
            region_arg(r),
            r.get("vmId").unwrap_or("ID"),
            r.name
        )
    }

    fn host_key_attr(&self) -> &'static str {
        // The plugin's, which it also puts in every machine's knownHosts.
        "ec2.publicHostKey"
    }

    fn backups(&self) -> &'static str {
        "EC2 machines' backups are EBS snapshots, made through the AWS API, which this tool does not use: make them with the AWS console, ‘aws ec2 create-snapshot’ or AWS Backup"
    }

    fn resource_types(&self) -> &'static [ResourceType] {
        RESOURCE_TYPES
    }
}

/// The refusal for an EC2 machine that state does not hold.
fn not_in_state(machine: &str) -> anyhow::Error {
    anyhow!(
        "machine ‘{machine}’ has deployment.targetEnv = \"ec2\" but is not in state: creating an EC2 instance needs the AWS API, which this tool does not use. Create the instance with the AWS console or CLI, or Terraform/OpenTofu (its address can come in through network.inventory), and deploy it as targetEnv \"none\"; or create it with NixOps and nixops-aws, and import that state (‘nixops export’ there, ‘nixops import’ here)"
    )
}

/// The plugin's name of a device in state: `/dev/sdX` for `/dev/xvdX`.
fn stored_device(d: &str) -> String {
    d.replace("/dev/xvd", "/dev/sd")
}

/// A boolean state attribute as NixOps writes them ("1" / "0").
fn flag(r: &Resource, attr: &str, default: bool) -> bool {
    match r.get(attr) {
        None => default,
        Some(v) => matches!(v, "1" | "true" | "True"),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        Some(Value::String(s)) => matches!(s.as_str(), "1" | "true" | "True"),
        _ => false,
    }
}

fn region_arg(r: &Resource) -> String {
    r.get("ec2.region")
        .filter(|s| !s.is_empty())
        .map(|s| format!(" --region {s}"))
        .unwrap_or_default()
}

/// nixops-aws' resource types: their state type, the attribute `info`
/// shows as their id, and what NixOps feeds back of them into the
/// evaluation (option ← state attribute).
static RESOURCE_TYPES: &[ResourceType] = &[
    ResourceType::new("ec2KeyPairs", "ec2-keypair", "ec2.keyPairName"),
    ResourceType::new("ebsVolumes", "ebs-volume", "ec2.volumeId"),
    ResourceType {
        address: Some("ec2.ipv4"),
        fed_back: &[("address", "ec2.ipv4")],
        null_when_missing: false,
        ..ResourceType::new("elasticIPs", "elastic-ip", "allocationId")
    },
    ResourceType {
        fed_back: &[("groupId", "ec2.securityGroupId")],
        ..ResourceType::new("ec2SecurityGroups", "ec2-security-group", "ec2.securityGroupName")
    },
    ResourceType::new(
        "ec2PlacementGroups",
        "ec2-placement-group",
        "ec2.placementGroupName",
    ),
    ResourceType::new("iamRoles", "iam-role", "ec2.roleName"),
    ResourceType::new("s3Buckets", "s3-bucket", "ec2.bucketName"),
    ResourceType::new("route53RecordSets", "aws-route53-recordset", "domainName"),
    ResourceType::new("route53HostedZones", "aws-route53-hosted-zone", "zoneId"),
    ResourceType::new("route53HealthChecks", "aws-route53-health-check", "healthCheckId"),
    ResourceType {
        fed_back: &[("vpcId", "vpcId")],
        ..ResourceType::new("vpc", "vpc", "vpcId")
    },
    ResourceType {
        fed_back: &[("subnetId", "subnetId")],
        ..ResourceType::new("vpcSubnets", "vpc-subnet", "subnetId")
    },
    ResourceType::new("vpcInternetGateways", "vpc-internet-gateway", "internetGatewayId"),
    ResourceType::new(
        "vpcEgressOnlyInternetGateways",
        "vpc-egress-only-internet-gateway",
        "egressOnlyInternetGatewayId",
    ),
    ResourceType {
        fed_back: &[("routeTableId", "routeTableId")],
        ..ResourceType::new("vpcRouteTables", "vpc-route-table", "routeTableId")
    },
    ResourceType {
        fed_back: &[("associationId", "associationId")],
        ..ResourceType::new(
            "vpcRouteTableAssociations",
            "vpc-route-table-association",
            "associationId",
        )
    },
    ResourceType::new("vpcRoutes", "vpc-route", "destinationCidrBlock"),
    ResourceType {
        fed_back: &[("natGatewayId", "natGatewayId")],
        ..ResourceType::new("vpcNatGateways", "vpc-nat-gateway", "natGatewayId")
    },
    ResourceType {
        fed_back: &[("networkInterfaceId", "networkInterfaceId")],
        ..ResourceType::new(
            "vpcNetworkInterfaces",
            "vpc-network-interface",
            "networkInterfaceId",
        )
    },
    ResourceType {
        fed_back: &[("attachmentId", "attachmentId")],
        ..ResourceType::new(
            "vpcNetworkInterfaceAttachments",
            "vpc-network-interface-attachment",
            "attachmentId",
        )
    },
    ResourceType::new("vpcDhcpOptions", "vpc-dhcp-options", "dhcpOptionsId"),
    ResourceType::new("vpcNetworkAcls", "vpc-network-acl", "networkAclId"),
    ResourceType::new("vpcCustomerGateways", "vpc-customer-gateway", "customerGatewayId"),
    ResourceType::new("vpcEndpoints", "vpc-endpoint", "endpointId"),
    ResourceType {
        fed_back: &[("arn", "cloudwatch.logGroupARN")],
        ..ResourceType::new(
            "cloudwatchLogGroups",
            "cloudwatch-log-group",
            "cloudwatch.logGroupName",
        )
    },
    ResourceType {
        fed_back: &[("arn", "cloudwatch.logStreamARN")],
        ..ResourceType::new(
            "cloudwatchLogStreams",
            "cloudwatch-log-stream",
            "cloudwatch.logStreamName",
        )
    },
    ResourceType::new("cloudwatchMetricAlarms", "cloudwatch-metric-alarm", "name"),
    ResourceType::new("snsTopics", "sns-topic", "topicName"),
    ResourceType::new("sqsQueues", "sqs-queue", "queueName"),
    ResourceType::new("rdsDbInstances", "ec2-rds-dbinstance", "dbInstanceId"),
    ResourceType::new("rdsSubnetGroups", "rds-subnet-group", "groupName"),
    ResourceType::new("rdsDbSecurityGroups", "ec2-rds-dbsecurity-group", "groupName"),
    ResourceType::new("elasticFileSystems", "elastic-file-system", "fsId"),
    ResourceType::new(
        "elasticFileSystemMountTargets",
        "elastic-file-system-mount-target",
        "fsmtId",
    ),
    ResourceType::new("awsVPNGateways", "aws-vpn-gateway", "vpnGatewayId"),
    ResourceType::new("awsVPNConnections", "aws-vpn-connection", "vpnConnectionId"),
    ResourceType::new(
        "awsVPNConnectionRoutes",
        "aws-vpn-connection-route",
        "destinationCidrBlock",
    ),
    ResourceType::new(
        "awsDataLifecycleManager",
        "aws-data-lifecycle-manager",
        "policyId",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn machine(attrs: &[(&str, &str)]) -> Resource {
        Resource {
            id: 1,
            name: "web".into(),
            kind: "ec2".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn info(backend: Value) -> MachineInfo {
        let mut m: MachineInfo = serde_json::from_value(json!({
            "targetEnv": "ec2", "targetHost": "web", "targetPort": null, "targetUser": "root",
            "sshOptions": [], "privilegeEscalationCommand": [], "alwaysActivate": true,
            "hasFastConnection": false, "owners": [], "keys": null, "toplevel": null, "drvPath": null,
        }))
        .unwrap();
        m.backend = Some(backend);
        m
    }

    fn deployment(resources: Vec<Resource>) -> Deployment {
        Deployment {
            uuid: "u".into(),
            attrs: BTreeMap::new(),
            resources: resources.into_iter().map(|r| (r.name.clone(), r)).collect(),
        }
    }

    #[test]
    fn reached_at_its_public_or_private_address_with_its_key_pairs_key() {
        let kp = Resource {
            id: 2,
            name: "kp".into(),
            kind: "ec2-keypair".into(),
            attrs: [("ec2.keyPairName", "pair"), ("privateKey", "KEY"), ("state", "3")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let m = machine(&[
            ("publicIpv4", "127.0.0.9"),
            ("privateIpv4", "127.0.0.8"),
            ("ec2.keyPair", "pair"),
            ("ec2.publicHostKey", "ssh-ed25519 AAAA"),
        ]);
        let d = deployment(vec![kp, m.clone()]);
        let r = Ec2.reach(&d, "web", &info(json!({})), Some(&m)).unwrap();
        assert_eq!(r.host, "127.0.0.9");
        assert_eq!(r.private_key.as_deref(), Some("KEY"));
        assert_eq!(r.host_key.as_deref(), Some("ssh-ed25519 AAAA"));
        let mut p = m.clone();
        p.attrs.insert("ec2.usePrivateIpAddress".into(), "1".into());
        p.attrs.insert("ec2.privateKeyFile".into(), "/keys/id".into());
        let r = Ec2.reach(&d, "web", &info(json!({})), Some(&p)).unwrap();
        assert_eq!(r.host, "127.0.0.8");
        assert_eq!(
            (r.private_key, r.private_key_file.as_deref()),
            (None, Some("/keys/id"))
        );
        let e = Ec2
            .reach(&d, "web", &info(json!({})), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in state") && e.contains("AWS API"), "{e}");
    }

    #[test]
    fn the_physical_spec_gives_back_generated_passphrases_and_the_instance_id() {
        let m = machine(&[
            ("vmId", "i-1"),
            (
                "ec2.blockDeviceMapping",
                r#"{"/dev/sdf": {"encrypt": true, "generatedKey": "s3cret", "volumeId": "vol-1"}, "/dev/sdg": {"volumeId": "vol-2"}}"#,
            ),
        ]);
        let spec = Ec2.physical(&deployment(vec![]), &m).unwrap();
        assert_eq!(spec.imports, [AMAZON_IMAGE]);
        assert_eq!(spec.defs[0].value, json!({}));
        assert_eq!(spec.defs[1].path[3], "/dev/xvdf");
        assert_eq!(
            (&spec.defs[1].value, spec.defs[1].priority),
            (&json!("s3cret"), Some(10))
        );
        assert_eq!(spec.defs[2].value, json!("i-1"));
        assert_eq!(spec.defs.len(), 3);
        let none = Ec2.physical(&deployment(vec![]), &machine(&[])).unwrap();
        assert_eq!(none.defs[1].value, json!(true));
    }

    #[test]
    fn changes_only_the_aws_api_could_make_are_refused() {
        let m = machine(&[
            ("vmId", "i-1"),
            ("ec2.region", "us-east-1"),
            ("ec2.instanceType", "t3.micro"),
            ("ec2.blockDeviceMapping", r#"{"/dev/sdf": {"volumeId": "vol-1"}}"#),
        ]);
        let same = json!({ "region": "us-east-1", "instanceType": "t3.micro", "devices": ["/dev/xvdf"] });
        Ec2.check_deploy("web", &info(same), Some(&m)).unwrap();
        let bigger = json!({ "region": "us-east-1", "instanceType": "t3.large", "devices": ["/dev/xvdf", "/dev/xvdg"] });
        let e = Ec2
            .check_deploy("web", &info(bigger), Some(&m))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("instanceType is \"t3.large\", the instance's is \"t3.micro\"")
                && e.contains("/dev/sdg is new")
                && e.contains("i-1"),
            "{e}"
        );
        let e = Ec2
            .check_deploy("web", &info(json!({})), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in state"), "{e}");
    }
}
