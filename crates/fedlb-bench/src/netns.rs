//! Network namespaces for servers that must not share the host's socket tables (an
//! agent's crash detection watches its own server's listening port; on one shared
//! loopback the port of the other servers would still be listening).
//!
//! Namespace `i` gets a veth pair: `10.<net>.<i>.1/24` on the host side, `10.<net>.<i>.2`
//! inside, with a default route to the host. Agents inside reach nodes listening on a
//! host-side address. Removed on drop.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

/// A set of namespaces made by this run.
pub struct Namespaces {
    names: Vec<String>,
    net: u8,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Namespaces {
    /// Makes `count` namespaces on subnet `10.<net>.0.0/16`.
    pub fn create(count: u8, net: u8) -> anyhow::Result<Namespaces> {
        let mut ns = Namespaces {
            names: Vec::new(),
            net,
        };
        let tag = std::process::id() % 10_000;
        for i in 1..=count {
            let name = format!("fbb{tag}n{i}");
            let host_if = format!("fbb{tag}h{i}");
            ip(&["netns", "add", &name])?;
            ns.names.push(name.clone());
            ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ])?;
            ip(&[
                "addr",
                "add",
                &format!("10.{net}.{i}.1/24"),
                "dev",
                &host_if,
            ])?;
            ip(&["link", "set", &host_if, "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("10.{net}.{i}.2/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&[
                "-n",
                &name,
                "route",
                "add",
                "default",
                "via",
                &format!("10.{net}.{i}.1"),
            ])?;
        }
        Ok(ns)
    }

    /// The name of namespace `i` (1-based).
    pub fn name(&self, i: u8) -> &str {
        &self.names[usize::from(i) - 1]
    }

    /// The address inside namespace `i`.
    pub fn inside(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, i, 2)
    }

    /// The host-side address of namespace `i`'s link.
    pub fn host_side(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, i, 1)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            // deleting the namespace deletes its end of the veth, and so the pair
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}
