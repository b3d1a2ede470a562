//! targetEnv "libvirtd": virtual machines this tool makes through libvirt
//! (`virsh`, so that any libvirt URI works, remote ones included), with
//! the nixops-libvirtd plugin's options and state attributes, so that a
//! NixOps state with such machines carries over both ways.
//!
//! Making a machine is a sequence of steps, each recorded in state before
//! it touches libvirt (names are derived from the deployment and machine):
//! an interrupted make is finished by the next deploy, and `destroy`
//! removes whatever of it exists. Nothing is leaked.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::{Backend, Destroyed, Power, Reach, Spec, StateWriter, Stored};
use crate::network::MachineInfo;
use crate::process::{self, Sink};
use crate::state::{AttrChange, Deployment, Resource, machine_state};

pub struct Libvirtd;

/// State attributes, named as the nixops-libvirtd plugin names them.
const PRIVATE_KEY: &str = "libvirtd.clientPrivateKey";
const PUBLIC_KEY: &str = "libvirtd.clientPublicKey";
const MAC: &str = "libvirtd.primaryMAC";
const NET: &str = "libvirtd.primaryNet";
const POOL: &str = "libvirtd.storagePool";
const VOLUME: &str = "libvirtd.storageVolume";
const URI: &str = "libvirtd.URI";
const DOMAIN_XML: &str = "libvirtd.domainXML";
const VM_ID: &str = "vmId";
/// Ours: where a user-mode interface forwards the guest's SSH port.
const HOST_ADDRESS: &str = "libvirtd.hostAddress";
const HOST_PORT: &str = "libvirtd.hostPort";
/// Ours: the disk holds the whole image (an upload cut short leaves a
/// volume that boots nothing).
const DISK_DONE: &str = "libvirtd.diskUploaded";

/// How long a started machine may take to answer on SSH.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The machine's `deployment.libvirtd` options the tool reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Options {
    #[serde(rename = "URI")]
    uri: String,
    storage_pool: String,
    vcpu: i64,
    memory_size: i64,
    headless: bool,
    networks: Vec<Network>,
    #[serde(rename = "extraDevicesXML")]
    extra_devices_xml: String,
    #[serde(rename = "extraDomainXML")]
    extra_domain_xml: String,
    domain_type: String,
    cmdline: String,
    initrd: String,
    kernel: String,
}

/// One of `deployment.libvirtd.networks`: a libvirt network's name, or a
/// user-mode interface (ours).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
enum Network {
    Named(String),
    #[serde(rename_all = "camelCase")]
    User {
        #[allow(dead_code)] // always "user": what tells it from a name
        r#type: String,
        host_address: String,
        host_port: Option<u16>,
    },
}

fn options(machine: &str, info: &MachineInfo) -> Result<Options> {
    let v = info.backend.clone().with_context(|| {
        format!("machine ‘{machine}’: its deployment.libvirtd options were not evaluated")
    })?;
    let o: Options = serde_json::from_value(v)
        .with_context(|| format!("machine ‘{machine}’: reading its deployment.libvirtd options"))?;
    if o.networks.is_empty() {
        bail!(
            "machine ‘{machine}’: deployment.libvirtd.networks is empty; a machine needs a network to be reached"
        );
    }
    Ok(o)
}

impl Backend for Libvirtd {
    fn target_env(&self) -> &'static str {
        "libvirtd"
    }

    fn describe(&self) -> &'static str {
        "a libvirt virtual machine (targetEnv \"libvirtd\")"
    }

    fn options_nix(&self) -> &'static str {
        include_str!("libvirtd.nix")
    }

    fn reach(
        &self,
        _d: &Deployment,
        machine: &str,
        info: &MachineInfo,
        state: Option<&Resource>,
    ) -> Result<Reach> {
        let Some(r) = state.filter(|r| r.get(VM_ID).is_some()) else {
            bail!("machine ‘{machine}’ (libvirtd) has not been made yet: ‘nixops deploy’ makes it");
        };
        let (host, port) = match (r.get(HOST_ADDRESS), r.get(HOST_PORT)) {
            (Some(a), Some(p)) => (a.to_owned(), Some(p.parse().context("libvirtd.hostPort in state")?)),
            _ => (
                r.get("privateIpv4")
                    .with_context(|| {
                        format!("machine ‘{machine}’ (libvirtd) has no address in state: it is not running (‘nixops start --include {machine}’)")
                    })?
                    .to_owned(),
                super::none::port(machine, info.target_port)?,
            ),
        };
        Ok(Reach {
            host,
            port,
            user: "root".into(),
            private_key: r.get(PRIVATE_KEY).map(str::to_owned),
            private_key_file: None,
            host_key: r.get("publicHostKey").map(str::to_owned),
        })
    }

    fn resource_id(&self, r: &Resource) -> Option<String> {
        r.get(VM_ID).map(str::to_owned)
    }

    fn physical(&self, _d: &Deployment, r: &Resource) -> Result<Spec> {
        let mut spec = Spec::default();
        if let Some(key) = r.get(PUBLIC_KEY) {
            spec.defs.push(super::Def::new(
                &["users", "extraUsers", "root", "openssh", "authorizedKeys", "keys"],
                serde_json::json!([key]),
            ));
        }
        Ok(spec)
    }

    fn check_deploy(&self, machine: &str, info: &MachineInfo, state: Option<&Resource>) -> Result<()> {
        let o = options(machine, info)?;
        if let Some(r) = state {
            for (attr, now, what) in [(URI, &o.uri, "URI"), (POOL, &o.storage_pool, "storagePool")] {
                if let Some(was) = r.get(attr)
                    && was != now
                {
                    bail!(
                        "machine ‘{machine}’ was made at deployment.libvirtd.{what} = \"{was}\", and the network now says \"{now}\": a machine does not move; destroy it first (‘nixops destroy --include {machine}’) to make it anew there"
                    );
                }
            }
        }
        Ok(())
    }

    fn makes_machines(&self) -> bool {
        true
    }

    fn image_option(&self) -> Option<&'static [&'static str]> {
        Some(&["deployment", "libvirtd", "baseImage"])
    }

    fn prepare<'a>(
        &'a self,
        d: &'a Deployment,
        machine: &'a str,
        info: &'a MachineInfo,
        state: Option<&'a Resource>,
    ) -> BoxFuture<'a, Result<Vec<AttrChange>>> {
        async move {
            let o = options(machine, info)?;
            let get = |a: &str| state.and_then(|r| r.get(a));
            let mut changes: Vec<AttrChange> = Vec::new();
            let mut set = |a: &str, v: String| changes.push((a.to_owned(), Some(v)));
            if get(PRIVATE_KEY).is_none() || get(PUBLIC_KEY).is_none() {
                let (private, public) = crate::ssh::generate_key_pair().await?;
                set(PRIVATE_KEY, private.to_string());
                set(PUBLIC_KEY, public);
            }
            if get(MAC).is_none() {
                set(MAC, random_mac());
            }
            if get(VM_ID).is_none() {
                set(URI, o.uri.clone());
                set(POOL, o.storage_pool.clone());
                set(VOLUME, format!("{}.qcow2", vm_name(d, machine)));
                set(
                    NET,
                    match &o.networks[0] {
                        Network::Named(n) => n.clone(),
                        Network::User { .. } => "user".into(),
                    },
                );
            }
            if let Network::User {
                host_address,
                host_port,
                ..
            } = &o.networks[0]
                && get(HOST_PORT).is_none()
            {
                set(HOST_ADDRESS, host_address.clone());
                // Where others reach it (NixOps' physical spec makes it the
                // machine's networking.publicIPv4, which `nodes` shows).
                set("publicIpv4", host_address.clone());
                let port = match host_port {
                    Some(p) => *p,
                    None => free_port(host_address)?,
                };
                set(HOST_PORT, port.to_string());
            }
            Ok(changes)
        }
        .boxed()
    }

    fn make<'a>(
        &'a self,
        m: Stored<'a>,
        info: &'a MachineInfo,
        image: Option<&'a Path>,
        state: &'a StateWriter,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let o = options(&m.resource.name, info)?;
            let vm = Vm::of(&m)?;
            // A machine the plugin made, or whose upload finished, has its
            // disk; a volume without that mark is from an upload cut short.
            let complete = m.resource.get(DISK_DONE).is_some() || m.resource.get(VM_ID).is_some();
            let exists = vm.volume_exists().await?;
            if exists && !complete {
                vm.virsh(&["vol-delete", "--pool", &vm.pool, &vm.volume]).await?;
            }
            if !exists || !complete {
                let image = image.context("no base image was built for the machine's disk")?;
                vm.upload(image).await?;
                state.set(vec![(DISK_DONE.into(), Some("1".into()))])?;
            }
            if !vm.defined().await? {
                let xml = domain_xml(&vm, &o, m.resource)?;
                // Recorded first: a domain defined by a command that is then
                // killed is known to state, so destroy finds it.
                state.set(vec![
                    (DOMAIN_XML.into(), Some(xml.clone())),
                    (VM_ID.into(), Some(vm.name.clone())),
                ])?;
                vm.define(&xml).await?;
            }
            start(&vm, m.resource, state).await
        }
        .boxed()
    }

    fn power<'a>(&'a self, m: Stored<'a>, op: Power, state: &'a StateWriter) -> BoxFuture<'a, Result<()>> {
        async move {
            let vm = Vm::of(&m)?;
            if !vm.defined().await? {
                bail!(
                    "machine ‘{}’: its libvirt domain {} does not exist (at {}); ‘nixops deploy’ makes it anew",
                    m.resource.name,
                    vm.name,
                    vm.uri
                );
            }
            match op {
                Power::Start => start(&vm, m.resource, state).await,
                Power::Stop => {
                    state
                        .set(vec![("state".into(), Some(machine_state::STOPPING.to_string()))])?;
                    if vm.running().await? {
                        vm.virsh(&["destroy", &vm.name]).await?;
                    }
                    state
                        .set(vec![("state".into(), Some(machine_state::STOPPED.to_string()))])
                }
            }
        }
        .boxed()
    }

    fn can_wipe(&self) -> bool {
        true
    }

    fn can_destroy(&self) -> bool {
        true
    }

    fn destroy<'a>(&'a self, m: Stored<'a>, _wipe: bool) -> BoxFuture<'a, Result<Destroyed>> {
        async move {
            // Nothing of it was made yet (not even planned).
            if m.resource.get(VOLUME).is_none() {
                return Ok(Destroyed::Deleted);
            }
            // The machine's disk is its volume: deleting it wipes it.
            let vm = Vm::of(&m)?;
            if vm.defined().await? {
                if vm.running().await? {
                    vm.virsh(&["destroy", &vm.name]).await?;
                }
                vm.virsh(&["undefine", &vm.name]).await?;
            }
            if vm.volume_exists().await? {
                vm.virsh(&["vol-delete", "--pool", &vm.pool, &vm.volume]).await?;
            }
            Ok(Destroyed::Deleted)
        }
        .boxed()
    }

    fn console_output<'a>(&'a self, m: Stored<'a>) -> BoxFuture<'a, Result<String>> {
        async move {
            let vm = Vm::of(&m)?;
            if !vm.is_local() {
                bail!(
                    "machine ‘{}’ runs at {}: its console log is on that host ({})",
                    m.resource.name,
                    vm.uri,
                    console_log(&vm.name)
                );
            }
            let path = console_log(&vm.name);
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read the console log {path}"))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        .boxed()
    }
}

/// The domain's name, as the plugin names it.
fn vm_name(d: &Deployment, machine: &str) -> String {
    format!("nixops-{}-{machine}", d.uuid)
}

/// Where the domain's serial console is logged (libvirt writes it).
fn console_log(vm: &str) -> String {
    format!("/var/log/libvirt/qemu/{vm}-console.log")
}

/// A locally administered MAC address in QEMU's range, as the plugin makes
/// one.
fn random_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0] & 0x7f, b[1], b[2])
}

/// A port of `address` nothing listens on now.
fn free_port(address: &str) -> Result<u16> {
    let l = std::net::TcpListener::bind((address, 0))
        .with_context(|| format!("cannot find a free port on {address} for the machine's SSH"))?;
    Ok(l.local_addr()?.port())
}

/// A machine's libvirt objects, as state names them.
struct Vm {
    uri: String,
    name: String,
    pool: String,
    volume: String,
}

impl Vm {
    fn of(m: &Stored<'_>) -> Result<Vm> {
        let r = m.resource;
        let need = |a: &str| {
            r.get(a)
                .map(str::to_owned)
                .with_context(|| format!("machine ‘{}’ (libvirtd): state has no {a}", r.name))
        };
        Ok(Vm {
            uri: r.get(URI).unwrap_or("qemu:///system").to_owned(),
            name: r
                .get(VM_ID)
                .map_or_else(|| vm_name(m.deployment, &r.name), str::to_owned),
            pool: need(POOL)?,
            volume: need(VOLUME)?,
        })
    }

    /// A URI of this machine's own hypervisor (no host in it).
    fn is_local(&self) -> bool {
        self.uri.contains(":///")
    }

    async fn run(&self, args: &[&str]) -> Result<process::Output> {
        let mut cmd = process::command("virsh");
        cmd.arg("-q").arg("-c").arg(&self.uri).args(args);
        process::run(&mut cmd, None, Sink::quiet())
            .await
            .with_context(|| format!("cannot run virsh (is libvirt installed?) for {}", self.uri))
    }

    async fn virsh(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args).await?;
        if !out.success() {
            bail!(
                "virsh -c {} {} failed: {}",
                self.uri,
                args.join(" "),
                out.last_error()
            );
        }
        Ok(out.stdout)
    }

    async fn defined(&self) -> Result<bool> {
        let out = self.run(&["domstate", &self.name]).await?;
        if out.success() {
            return Ok(true);
        }
        let e = out.last_error();
        if e.contains("ailed to get domain") || e.contains("Domain not found") || e.contains("no domain") {
            return Ok(false);
        }
        bail!("virsh -c {} domstate {}: {e}", self.uri, self.name)
    }

    async fn running(&self) -> Result<bool> {
        let s = self.virsh(&["domstate", &self.name]).await?;
        Ok(s.trim() == "running" || s.trim() == "paused")
    }

    async fn volume_exists(&self) -> Result<bool> {
        let out = self
            .run(&["vol-info", "--pool", &self.pool, &self.volume])
            .await?;
        if out.success() {
            return Ok(true);
        }
        let e = out.last_error();
        if e.contains("ailed to get vol")
            || e.contains("Storage volume not found")
            || e.contains("no storage vol")
        {
            return Ok(false);
        }
        bail!("virsh -c {} vol-info {}: {e}", self.uri, self.volume)
    }

    /// The machine's disk: a volume of the image's size, holding a copy of
    /// the image (uploaded through libvirt, so a remote hypervisor works).
    async fn upload(&self, image: &Path) -> Result<()> {
        let size = virtual_size(image).await?;
        self.virsh(&[
            "vol-create-as",
            &self.pool,
            &self.volume,
            &size.to_string(),
            "--format",
            "qcow2",
        ])
        .await?;
        let file = image.to_string_lossy();
        if let Err(e) = self
            .virsh(&["vol-upload", "--pool", &self.pool, &self.volume, &file])
            .await
        {
            // A volume without the image would boot nothing: gone again,
            // so the next deploy uploads it anew.
            let _ = self
                .run(&["vol-delete", "--pool", &self.pool, &self.volume])
                .await;
            return Err(e);
        }
        Ok(())
    }

    async fn define(&self, xml: &str) -> Result<()> {
        let dir = crate::tmp::TmpDir::new("nixops-domain-")?;
        let file = dir.path().join("domain.xml");
        std::fs::write(&file, xml)?;
        self.virsh(&["define", &file.to_string_lossy()]).await?;
        Ok(())
    }

    /// The machine's IPv4 address in libvirt's DHCP leases, by its MAC.
    async fn leased_address(&self, mac: &str) -> Result<Option<String>> {
        let out = self
            .virsh(&["domifaddr", &self.name, "--source", "lease"])
            .await?;
        Ok(lease_address(&out, mac))
    }
}

/// The address `virsh domifaddr --source lease` prints for `mac`: lines of
/// name, MAC, protocol and address/prefix, after a header.
fn lease_address(out: &str, mac: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            [_, m, "ipv4", addr, ..] if m.eq_ignore_ascii_case(mac) => {
                Some(addr.split('/').next().unwrap_or(addr).to_owned())
            }
            _ => None,
        }
    })
}

async fn virtual_size(image: &Path) -> Result<u64> {
    let mut cmd = process::command("qemu-img");
    cmd.args(["info", "--output", "json"]).arg(image);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!("qemu-img info {}: {}", image.display(), out.last_error());
    }
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "virtual-size")]
        virtual_size: u64,
    }
    let info: Info = serde_json::from_str(&out.stdout).context("qemu-img info's output")?;
    Ok(info.virtual_size)
}

/// Starts the domain unless it runs, and waits for its address and SSH.
async fn start(vm: &Vm, r: &Resource, state: &StateWriter) -> Result<()> {
    if !vm.running().await? {
        state.set(vec![("state".into(), Some(machine_state::STARTING.to_string()))])?;
        vm.virsh(&["start", &vm.name]).await?;
    }
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let (host, port) = match (r.get(HOST_ADDRESS), r.get(HOST_PORT)) {
        (Some(a), Some(p)) => (
            a.to_owned(),
            p.parse::<u16>().context("libvirtd.hostPort in state")?,
        ),
        _ => {
            let mac = r.get(MAC).context("state has no libvirtd.primaryMAC")?;
            let address = loop {
                if let Some(a) = vm.leased_address(mac).await? {
                    break a;
                }
                if Instant::now() > deadline {
                    bail!(
                        "machine ‘{}’ got no address from libvirt's DHCP in {}s",
                        r.name,
                        BOOT_TIMEOUT.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            state.set(vec![("privateIpv4".into(), Some(address.clone()))])?;
            (address, 22)
        }
    };
    wait_for_ssh(&r.name, &host, port, deadline).await?;
    state.set(vec![("state".into(), Some(machine_state::UP.to_string()))])
}

/// Waits until an SSH server greets us at `host:port` (a port forward
/// accepts connections before the guest's sshd runs: the greeting is what
/// tells).
async fn wait_for_ssh(machine: &str, host: &str, port: u16, deadline: Instant) -> Result<()> {
    use tokio::io::AsyncReadExt;
    loop {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect((host, port)).await?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await?;
            std::io::Result::Ok(&buf == b"SSH-")
        };
        if let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "machine ‘{machine}’ did not answer on SSH at {host}:{port} within {}s of starting (‘nixops show-console-output {machine}’ shows its console)",
                BOOT_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The domain, as the plugin makes it, with a virtio disk from the pool,
/// its interfaces, and its serial console logged. A user-mode interface is
/// QEMU's own (slirp: libvirt's passt backend is newer than Debian 12's
/// libvirt, and libvirt's slirp interface forwards no port), on a network
/// of a documentation range, restricted to the forwarded connection.
fn domain_xml(vm: &Vm, o: &Options, r: &Resource) -> Result<String> {
    let esc = xml_escape;
    let mac = r.get(MAC).context("state has no libvirtd.primaryMAC")?;
    let mut qemu_args: Vec<String> = Vec::new();
    let mut x = String::new();
    x += &format!(
        "<domain type=\"{}\" xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/1.0\">\n",
        esc(&o.domain_type)
    );
    x += &format!("  <name>{}</name>\n", esc(&vm.name));
    x += &format!("  <memory unit=\"MiB\">{}</memory>\n", o.memory_size);
    x += &format!("  <vcpu>{}</vcpu>\n", o.vcpu);
    x += "  <os>\n    <type arch=\"x86_64\">hvm</type>\n";
    if !o.kernel.is_empty() {
        x += &format!("    <kernel>{}</kernel>\n", esc(&o.kernel));
        if !o.initrd.is_empty() {
            x += &format!("    <initrd>{}</initrd>\n", esc(&o.initrd));
        }
        x += &format!("    <cmdline>{}</cmdline>\n", esc(&o.cmdline));
    }
    // ACPI: the power button (`virsh shutdown`, `virsh reboot`) works.
    x += "  </os>\n  <features>\n    <acpi/>\n  </features>\n  <devices>\n";
    x += "    <disk type=\"volume\" device=\"disk\">\n      <driver name=\"qemu\" type=\"qcow2\"/>\n";
    x += &format!(
        "      <source pool=\"{}\" volume=\"{}\"/>\n      <target dev=\"vda\" bus=\"virtio\"/>\n    </disk>\n",
        esc(&vm.pool),
        esc(&vm.volume)
    );
    for (i, n) in o.networks.iter().enumerate() {
        let mac_line = if i == 0 {
            format!("      <mac address=\"{mac}\"/>\n")
        } else {
            String::new()
        };
        match n {
            Network::Named(net) => {
                x += &format!(
                    "    <interface type=\"network\">\n{mac_line}      <source network=\"{}\"/>\n      <model type=\"virtio\"/>\n    </interface>\n",
                    esc(net)
                );
            }
            Network::User { host_address, .. } => {
                let port = match (i, r.get(HOST_PORT)) {
                    (0, Some(p)) => p.to_owned(),
                    _ => bail!(
                        "deployment.libvirtd.networks: a user-mode interface must be the first (its forwarded port is how the machine is reached)"
                    ),
                };
                qemu_args.extend([
                    "-netdev".to_owned(),
                    format!("user,id=nixops-net0,net=198.51.100.0/24,restrict=on,hostfwd=tcp:{host_address}:{port}-:22"),
                    "-device".to_owned(),
                    // A fixed slot: QEMU's own choice clashes with libvirt's.
                    format!("virtio-net-pci,netdev=nixops-net0,id=nixops-nic0,mac={mac},bus=pci.0,addr=0x10"),
                ]);
            }
        }
    }
    x += &format!(
        "    <serial type=\"pty\">\n      <log file=\"{}\" append=\"on\"/>\n    </serial>\n    <console type=\"pty\"/>\n",
        esc(&console_log(&vm.name))
    );
    x += "    <memballoon model=\"none\"/>\n";
    x += "    <rng model=\"virtio\">\n      <backend model=\"random\">/dev/urandom</backend>\n    </rng>\n";
    if !o.headless {
        x += "    <graphics type=\"vnc\" port=\"-1\" autoport=\"yes\" listen=\"127.0.0.1\"/>\n";
    }
    x += &o.extra_devices_xml;
    x += "  </devices>\n";
    if !qemu_args.is_empty() {
        x += "  <qemu:commandline>\n";
        for a in &qemu_args {
            x += &format!("    <qemu:arg value=\"{}\"/>\n", esc(a));
        }
        x += "  </qemu:commandline>\n";
    }
    x += &o.extra_domain_xml;
    x += "</domain>\n";
    Ok(x)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_addresses_are_read_from_virsh_domifaddr() {
        // The format `virsh domifaddr --source lease` prints (libvirt's
        // documentation); loopback stands in for a leased address.
        let out = " Name       MAC address          Protocol     Address\n-------------------------------------------------------------------------------\n vnet0      52:54:00:0a:0b:0c    ipv6         fe80::1/64\n vnet0      52:54:00:0a:0b:0c    ipv4         127.0.0.5/8\n vnet1      52:54:00:99:99:99    ipv4         127.0.0.6/8\n";
        assert_eq!(
            lease_address(out, "52:54:00:0A:0B:0C").as_deref(),
            Some("127.0.0.5")
        );
        assert_eq!(
            lease_address(out, "52:54:00:99:99:99").as_deref(),
            Some("127.0.0.6")
        );
        assert_eq!(lease_address(out, "52:54:00:00:00:01"), None);
        assert_eq!(lease_address("", "52:54:00:00:00:01"), None);
    }

    #[test]
    fn macs_are_in_qemus_locally_administered_range() {
        let m = random_mac();
        assert!(m.starts_with("52:54:00:") && m.len() == 17, "{m}");
    }

    #[test]
    fn networks_are_names_or_user_mode_interfaces() {
        let n: Vec<Network> = serde_json::from_value(serde_json::json!([
            "default",
            { "type": "user", "hostAddress": "127.0.0.1", "hostPort": null }
        ]))
        .unwrap();
        assert_eq!(n[0], Network::Named("default".into()));
        assert!(matches!(&n[1], Network::User { host_port: None, .. }));
    }
}
