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
