//! The `global` section: one global node (`[global]`) or several (`[[global]]`), each
//! with its own name, addresses and, optionally, its own embedded DNS server.

use std::collections::BTreeMap;

use fedlb_core::Spread;

use crate::model::{DnsServer, DnsTarget, GlobalNode};
use crate::schema::{RawGlobal, RawGlobals};

use super::Ctx;

impl Ctx<'_> {
    /// Each global node (or `None` where it is wrong) with the spread of its own embedded
    /// server, in declaration order; remembers each one's field path.
    pub(super) fn globals(&mut self, raw: RawGlobals) -> Vec<(Option<GlobalNode>, Option<Spread>)> {
        let list: Vec<(String, RawGlobal)> = match raw {
            RawGlobals::One(g) => vec![("global".to_owned(), *g)],
            RawGlobals::Many(gs) => gs
                .into_iter()
                .enumerate()
                .map(|(i, g)| (format!("global[{i}]"), g))
                .collect(),
        };
        if list.is_empty() {
            self.err("global", "at least one global node is needed");
        }
        self.global_paths = list.iter().map(|(p, _)| p.clone()).collect();
        let several = list.len() > 1;
        // every node must answer alike: one spread
        let mut first_spread: Option<(Spread, String)> = None;
        list.into_iter()
            .map(|(path, g)| {
                let name = match g.name {
                    Some(n) => n,
                    None if several => {
                        self.err(
                            format!("{path}.name"),
                            "required: with several global nodes each needs its own name (its certificate identity)",
                        );
                        String::new()
                    }
                    None => "global".to_owned(),
                };
                let name_ok = !name.is_empty() && self.name(&format!("{path}.name"), &name);
                let listen = self.socket(&format!("{path}.listen"), &g.listen);
                let status = self.socket(&format!("{path}.status"), &g.status);
                let location = g
                    .location
                    .and_then(|l| self.location(&format!("{path}.location"), l));
                let (dns, spread, dns_ok) = match g.embedded {
                    Some(e) => {
                        let (server, spread) = self.embedded(&format!("{path}.embedded"), e);
                        let ok = server.is_some() && spread.is_some();
                        match (&first_spread, spread) {
                            (Some((first, at)), Some(this)) if *first != this => {
                                self.err(
                                    format!("{path}.embedded.spread"),
                                    format!("spread \"{}\" differs from {at}'s \"{}\": every global node must answer alike", this.as_str(), first.as_str()),
                                );
                            }
                            (None, Some(this)) => first_spread = Some((this, path.clone())),
                            _ => {}
                        }
                        (server, spread, ok)
                    }
                    None => (None, None, true),
                };
                let node = match (name_ok && !name.is_empty(), listen, status, dns_ok) {
                    (true, Some(listen), Some(status), true) => Some(GlobalNode {
                        name,
                        listen,
                        status,
                        location,
                        dns,
                    }),
                    _ => None,
                };
                (node, spread)
            })
            .collect()
    }

    /// Across global nodes: one name each, one embedded server per process, one spread.
    pub(super) fn check_globals(&mut self, globals: &[GlobalNode], dns: &DnsTarget) {
        let paths = self.global_paths.clone();
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        let mut dirs: BTreeMap<&std::path::Path, String> = BTreeMap::new();
        if let DnsServer::Embedded { state_dir, .. } = &dns.server
            && globals.iter().any(|g| g.dns.is_none())
        {
            dirs.insert(state_dir, "dns.embedded".to_owned());
        }
        for (g, path) in globals.iter().zip(&paths) {
            if let Some(first) = names.get(g.name.as_str()) {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "global node \"{}\" declared twice (first at {first})",
                        g.name
                    ),
                );
            } else {
                names.insert(&g.name, path);
            }
            if let Some(DnsServer::Embedded { state_dir, .. }) = &g.dns {
                match dirs.get(state_dir.as_path()) {
                    Some(first) => self.err(
                        format!("{path}.embedded.state_dir"),
                        format!(
                            "state_dir \"{}\" is already used by {first}: each embedded server keeps its own zone and journal",
                            state_dir.display()
                        ),
                    ),
                    None => {
                        dirs.insert(state_dir, format!("{path}.embedded"));
                    }
                }
            }
        }
        if globals.len() > 1 && matches!(dns.server, DnsServer::Embedded { .. }) {
            let without: Vec<&str> = globals
                .iter()
                .zip(&paths)
                .filter(|(g, _)| g.dns.is_none())
                .map(|(_, p)| p.as_str())
                .collect();
            if !without.is_empty() {
                self.err(
                    "dns.embedded",
                    format!(
                        "one embedded server runs inside one global node, but {} of the {} global nodes ({}) would publish to it: give each global node its own `embedded`, or use dns.servers",
                        without.len(),
                        globals.len(),
                        without.join(", ")
                    ),
                );
            }
        }
    }
}
