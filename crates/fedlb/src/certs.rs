//! `fedlb certs`: a private CA and one certificate per node of a topology.

use std::path::Path;

use anyhow::{Context, bail};
use fedlb_net::{Ca, NodeName, Role};
use fedlb_topology::Loader;

fn role_of(r: &fedlb_topology::Role) -> Role {
    match r {
        fedlb_topology::Role::Global => Role::Global,
        fedlb_topology::Role::Farm(_) => Role::Farm,
        fedlb_topology::Role::Agent => Role::Agent,
    }
}

/// Issues an operator's certificate (`<name>.operator.pem` and `.key`) from the CA already
/// in `out`: a client certificate for admin calls (drain, pin, …), never a node's.
pub fn operator(topology: &Path, out: &Path, name: &str, force: bool) -> anyhow::Result<()> {
    // the topology names the federation the CA was made for
    let t = Loader::new()
        .read_key_files(false)
        .load(topology)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .topology;
    let ca = Ca::load(out).with_context(|| {
        format!(
            "loading the CA from {} (make it first: fedlb certs {})",
            out.display(),
            topology.display()
        )
    })?;
    if ca.federation() != t.name {
        bail!(
            "{}: the CA is for federation \"{}\", the topology is \"{}\"",
            out.display(),
            ca.federation(),
            t.name
        );
    }
    let name = NodeName::new(name).context("operator name")?;
    let cert = ca.issue(&name, Role::Operator)?;
    cert.write(out, force)?;
    println!(
        "{}: certificate for {} (admin calls: fedlb drain … --operator {name})",
        out.display(),
        cert.identity()
    );
    Ok(())
}

/// Makes (or extends) the certificate directory `out` for `topology`.
pub fn run(topology: &Path, out: &Path, force: bool, add: Option<&str>) -> anyhow::Result<()> {
    let t = Loader::new()
        .read_key_files(false)
        .load(topology)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .topology;
    let nodes = t.nodes();
    let ca = match add {
        Some(_) => {
            Ca::load(out).with_context(|| format!("loading the CA from {}", out.display()))?
        }
        None => {
            let ca = Ca::generate(&t.name).context("generating the CA")?;
            ca.write(out, force)?;
            println!("{}: new CA for federation \"{}\"", out.display(), t.name);
            ca
        }
    };
    let wanted: Vec<_> = match add {
        Some(name) => {
            let n: Vec<_> = nodes.iter().filter(|n| n.name == name).collect();
            if n.is_empty() {
                bail!(
                    "{}: no node named \"{name}\" (nodes: {})",
                    t.file,
                    nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            n
        }
        None => nodes.iter().collect(),
    };
    for node in wanted {
        let cert = ca.issue(&NodeName::new(node.name.as_str())?, role_of(&node.role))?;
        cert.write(out, force || add.is_some())?;
        println!("{}: certificate for {}", out.display(), cert.identity());
    }
    Ok(())
}
