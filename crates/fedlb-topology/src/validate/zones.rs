//! `dns.zones` (or `dns.zone`): the zones answers are published in, each with the servers
//! and key it is updated through.

use crate::model::{DnsServer, Zone, in_zone};
use crate::schema::RawZone;

use super::Ctx;

impl Ctx<'_> {
    /// `dns.zone` or `dns.zones`: each zone with the servers and key it is updated through.
    pub(super) fn zones(
        &mut self,
        zone: Option<String>,
        zones: Option<Vec<RawZone>>,
        server: Option<&DnsServer>,
        extras: bool,
    ) -> Option<Vec<Zone>> {
        let embedded = matches!(server, Some(DnsServer::Embedded { .. }));
        let list = match (zone, zones) {
            (Some(_), Some(_)) => {
                self.err(
                    "dns.zones",
                    "give `zone` (one zone) or `zones` (several), not both",
                );
                return None;
            }
            (None, None) => {
                self.err(
                    "dns.zone",
                    "missing: the zone answers are published in (or `zones`, a list of them)",
                );
                return None;
            }
            (Some(z), None) => {
                return self.domain("dns.zone", &z).map(|name| {
                    vec![Zone {
                        name,
                        servers: None,
                        tsig: None,
                        tsig_file: None,
                    }]
                });
            }
            (None, Some(list)) => list,
        };
        if list.is_empty() {
            self.err("dns.zones", "at least one zone is needed");
            return None;
        }
        let mut ok = true;
        let mut out: Vec<(usize, Zone)> = Vec::new();
        for (i, rz) in list.into_iter().enumerate() {
            let p = format!("dns.zones[{i}]");
            let Some(name) = self.domain(&format!("{p}.name"), &rz.name) else {
                ok = false;
                continue;
            };
            if let Some((j, _)) = out.iter().find(|(_, z)| z.name == name) {
                self.err(
                    format!("{p}.name"),
                    format!("zone \"{name}\" listed twice (first at dns.zones[{j}])"),
                );
                ok = false;
                continue;
            }
            if let Some((j, other)) = out
                .iter()
                .find(|(_, z)| in_zone(&name, &z.name) || in_zone(&z.name, &name))
            {
                let (inner, outer) = if in_zone(&name, &other.name) {
                    (&name, &other.name)
                } else {
                    (&other.name, &name)
                };
                self.err(
                    format!("{p}.name"),
                    format!(
                        "zone \"{inner}\" is inside zone \"{outer}\" (dns.zones[{j}]): nested zones are refused, as a name under both would depend on the delegation; publish the inner zone's names in the outer one, or serve it elsewhere"
                    ),
                );
                ok = false;
                continue;
            }
            let servers = match rz.servers {
                Some(_) if embedded => {
                    self.err(
                        format!("{p}.servers"),
                        "the embedded server serves every zone itself: per-zone servers are for external primaries (dns.servers)",
                    );
                    ok = false;
                    None
                }
                Some(list) => {
                    if list.is_empty() {
                        self.err(format!("{p}.servers"), "at least one server is needed");
                        ok = false;
                    }
                    let mut primaries = Vec::new();
                    for (k, s) in list.iter().enumerate() {
                        let sp = format!("{p}.servers[{k}]");
                        match self.socket(&sp, s) {
                            Some(a) if primaries.contains(&a) => {
                                self.err(sp, format!("server {a} listed twice"));
                                ok = false;
                            }
                            Some(a) => primaries.push(a),
                            None => ok = false,
                        }
                    }
                    Some(primaries)
                }
                None => None,
            };
            let (tsig, tsig_file) = match rz.tsig {
                Some(_) if embedded => {
                    self.err(
                        format!("{p}.tsig"),
                        "the embedded server updates every zone with the node's keys (dns.tsig, the regions' keys): per-zone keys are for external primaries",
                    );
                    ok = false;
                    (None, None)
                }
                Some(t) => self.tsig(&format!("{p}.tsig"), t),
                None => (None, None),
            };
            out.push((
                i,
                Zone {
                    name,
                    servers,
                    tsig,
                    tsig_file,
                },
            ));
        }
        if out.len() > 1 {
            if extras {
                self.err(
                    "dns.zones",
                    "several zones with dns.file or dns.command are not supported yet (they write one zone's answers)",
                );
                ok = false;
            }
            if let Some(DnsServer::Embedded { secondaries, .. }) = server
                && !secondaries.is_empty()
            {
                self.err(
                    "dns.embedded.secondaries",
                    "several zones with secondaries are not supported yet (NOTIFY and transfers name one zone)",
                );
                ok = false;
            }
        }
        ok.then(|| out.into_iter().map(|(_, z)| z).collect())
    }
}
