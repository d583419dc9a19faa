//! The `dns` section: the zone, TTLs, the DNS server and its TSIG key.

use std::path::PathBuf;
use std::time::Duration;

use fedlb_core::Spread;
use fedlb_core::time::human;

use crate::model::{CommandOutput, DnsServer, DnsTarget, FileOutput};
use crate::schema::{RawDns, RawTsig};
use crate::tsig::{KeyFile, TsigAlgorithm, TsigKey, decode_secret, parse_key_file};

use super::{Ctx, DEFAULT_RECONCILE, DEFAULT_TTL, DEFAULT_TTL_MIN};

impl Ctx<'_> {
    /// `own_servers`: when every global node has its own embedded server, the first one's
    /// (and the spread they share); `dns` then needs no server.
    pub(super) fn dns(
        &mut self,
        raw: RawDns,
        own_servers: Option<(Option<DnsServer>, Option<Spread>)>,
    ) -> Option<DnsTarget> {
        let (raw_zone, raw_zones) = (raw.zone, raw.zones);
        let ttl = match &raw.ttl {
            Some(d) => self.duration("dns.ttl", d),
            None => Some(DEFAULT_TTL),
        };
        if ttl.is_some_and(|t| t > Duration::from_secs(i32::MAX as u64)) {
            self.err("dns.ttl", "ttl above 2^31-1 seconds is not valid DNS");
        }
        if ttl == Some(Duration::ZERO) {
            self.warn(
                "dns.ttl",
                "ttl 0 disables caching: every client query reaches the DNS server",
            );
        }
        let ttl_min = match &raw.ttl_min {
            Some(d) => self.duration("dns.ttl_min", d),
            None => Some(DEFAULT_TTL_MIN.min(ttl.unwrap_or(DEFAULT_TTL))),
        };
        if let (Some(min), Some(max)) = (ttl_min, ttl)
            && min > max
        {
            self.err(
                "dns.ttl_min",
                format!("ttl_min {} is above ttl {}", human(min), human(max)),
            );
        }
        let reconcile = match &raw.reconcile {
            Some(d) => self.duration("dns.reconcile", d),
            None => Some(DEFAULT_RECONCILE),
        };
        if reconcile == Some(Duration::ZERO) {
            self.err("dns.reconcile", "reconcile interval must be above 0");
        }
        let file = match &raw.file {
            Some(f) if f.json.trim().is_empty() => {
                self.err("dns.file.json", "must not be empty");
                None
            }
            Some(f) => Some(FileOutput {
                json: self.file_path(&f.json),
                zone_fragment: f.zone_fragment.as_deref().map(|z| self.file_path(z)),
            }),
            None => None,
        };
        let command = match &raw.command {
            Some(c) if c.argv.is_empty() || c.argv[0].trim().is_empty() => {
                self.err("dns.command.argv", "must name a program");
                None
            }
            Some(c) => {
                let timeout = match &c.timeout {
                    Some(d) => self.duration("dns.command.timeout", d),
                    None => Some(Duration::from_secs(10)),
                };
                timeout.map(|timeout| CommandOutput {
                    argv: c.argv.clone(),
                    timeout,
                })
            }
            None => None,
        };
        let answers = match raw.answers {
            Some(a) => self.int("dns.answers", a, 1, 64).map(|a| a as usize),
            None => Some(1),
        };
        let mut spread = Some(Spread::All);
        let server = match (raw.server, raw.servers, raw.embedded) {
            (Some(_), Some(_), _) => {
                self.err("dns.server", "give `server` or `servers`, not both");
                None
            }
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                self.err(
                    "dns.embedded",
                    "`embedded` and `server(s)` exclude each other: run the built-in server or update an external one",
                );
                None
            }
            (Some(s), None, None) => self
                .socket("dns.server", &s)
                .map(|a| DnsServer::Rfc2136 { primaries: vec![a] }),
            (None, Some(list), None) => {
                if list.is_empty() {
                    self.err("dns.servers", "at least one server is needed");
                }
                let mut primaries = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    let p = format!("dns.servers[{i}]");
                    if let Some(a) = self.socket(&p, s) {
                        if primaries.contains(&a) {
                            self.err(p, format!("server {a} listed twice"));
                        } else {
                            primaries.push(a);
                        }
                    }
                }
                (!list.is_empty() && primaries.len() == list.len())
                    .then_some(DnsServer::Rfc2136 { primaries })
            }
            (None, None, Some(e)) => {
                let (server, sp) = self.embedded("dns.embedded", e);
                spread = sp;
                server
            }
            (None, None, None) if own_servers.is_some() => {
                let (server, sp) = own_servers.expect("checked");
                spread = sp;
                server
            }
            (None, None, None) => {
                self.err(
                    "dns",
                    "missing `servers` (external primaries updated by RFC 2136) or `embedded` (the built-in server)",
                );
                None
            }
        };
        let (tsig, tsig_file) = match raw.tsig {
            Some(t) => self.tsig("dns.tsig", t),
            None => {
                if matches!(server, Some(DnsServer::Rfc2136 { .. })) {
                    self.err(
                        "dns.tsig",
                        "missing: updates to an external server must be signed with a TSIG key",
                    );
                }
                (None, None)
            }
        };
        if let (
            Some(DnsServer::Embedded {
                transfer_key: Some(t),
                ..
            }),
            Some(k),
        ) = (&server, &tsig)
            && t.name.trim_end_matches('.') == k.name.trim_end_matches('.')
        {
            self.warn(
                "dns.embedded.transfer_key",
                format!("key \"{}\" is also dns.tsig: every secondary holding it can update the zone; give secondaries a key of their own", t.name),
            );
        }
        let zones = self.zones(
            raw_zone,
            raw_zones,
            server.as_ref(),
            file.is_some() || command.is_some(),
        );
        let geoip_database = match raw.geoip_database.as_deref() {
            Some(g) if g.trim().is_empty() => {
                self.err("dns.geoip_database", "must not be empty");
                None
            }
            Some(g) => {
                let path = self.file_path(g);
                // read by the node that publishes, like the key file
                if self.opts.read_key_files && !path.is_file() {
                    self.err(
                        "dns.geoip_database",
                        format!(
                            "geoip database \"{}\" is not a file here (a MaxMind-format country database, as GeoLite2-Country.mmdb)",
                            path.display()
                        ),
                    );
                }
                Some(path)
            }
            None => None,
        };
        let zones = zones?;
        Some(DnsTarget {
            zone: zones.first()?.name.clone(),
            zones,
            ttl: ttl?,
            derive_ttl: raw.derive_ttl.unwrap_or(false),
            ttl_min: ttl_min?,
            ttl_by_load: raw.ttl_by_load.unwrap_or(false),
            spread: spread?,
            reconcile: reconcile?,
            file,
            command,
            answers: answers?,
            server: server?,
            tsig,
            tsig_file,
            geoip_database,
        })
    }

    /// An `embedded` table at `at` (`dns.embedded`, or a global node's own): the server and
    /// its spread, each `None` when wrong.
    pub(super) fn embedded(
        &mut self,
        at: &str,
        e: crate::schema::RawEmbedded,
    ) -> (Option<DnsServer>, Option<Spread>) {
        // By default each query gets one member of a weighted set, chosen by weight from its
        // client's subnet: the scenario suite chose it (README).
        let spread = match e.spread.as_deref() {
            None | Some("hashed") => Some(Spread::Hashed),
            Some("all") => Some(Spread::All),
            Some("weighted") => Some(Spread::Weighted),
            Some(other) => {
                self.err(
                    format!("{at}.spread"),
                    format!("unknown spread \"{other}\" (expected all, weighted or hashed)"),
                );
                None
            }
        };
        let listen = self.socket(&format!("{at}.listen"), &e.listen);
        if e.state_dir.trim().is_empty() {
            self.err(format!("{at}.state_dir"), "must not be empty");
        }
        let mut secondaries = Vec::new();
        let mut secondaries_ok = true;
        for (i, s) in e.secondaries.iter().enumerate() {
            let p = format!("{at}.secondaries[{i}]");
            match self.socket(&p, s) {
                Some(a) if Some(a) == listen => {
                    self.err(
                        p,
                        format!("{a} is the embedded server's own address ({at}.listen): a secondary is another server"),
                    );
                    secondaries_ok = false;
                }
                Some(a) if secondaries.contains(&a) => {
                    self.err(p, format!("secondary {a} listed twice"));
                    secondaries_ok = false;
                }
                Some(a) => secondaries.push(a),
                None => secondaries_ok = false,
            }
        }
        let (transfer_key, transfer_key_file) = match e.transfer_key {
            Some(t) => {
                if e.secondaries.is_empty() {
                    self.warn(
                        format!("{at}.transfer_key"),
                        format!(
                            "no secondaries: the key is unused (list them in {at}.secondaries)"
                        ),
                    );
                }
                self.tsig(&format!("{at}.transfer_key"), t)
            }
            None => {
                if !e.secondaries.is_empty() {
                    self.err(
                        format!("{at}.transfer_key"),
                        "missing: secondaries must sign their zone transfers with a key (unsigned transfers are refused); make one with tsig-keygen",
                    );
                    secondaries_ok = false;
                }
                (None, None)
            }
        };
        let server = match (listen, secondaries_ok) {
            (Some(listen), true) => Some(DnsServer::Embedded {
                listen,
                state_dir: self.file_path(&e.state_dir),
                secondaries,
                transfer_key,
                transfer_key_file,
            }),
            _ => None,
        };
        (server, spread)
    }

    pub(super) fn tsig(&mut self, at: &str, raw: RawTsig) -> (Option<TsigKey>, Option<PathBuf>) {
        let algorithm = match &raw.algorithm {
            Some(a) => match TsigAlgorithm::parse(a) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.err(format!("{at}.algorithm"), e);
                    return (None, None);
                }
            },
            None => None,
        };
        let key = match (raw.key_file, raw.secret) {
            (Some(_), Some(_)) => {
                self.err(
                    format!("{at}.secret"),
                    "give `key_file` or `secret`, not both",
                );
                return (None, None);
            }
            (None, None) => {
                self.err(
                    at,
                    "needs `key_file` (a tsig-keygen file or a bare base64 secret) or `secret`",
                );
                return (None, None);
            }
            (None, Some(secret)) => {
                let secret = match decode_secret(&secret) {
                    Ok(s) => s,
                    Err(e) => {
                        self.err(format!("{at}.secret"), e);
                        return (None, None);
                    }
                };
                let Some(name) = raw.name else {
                    self.err(format!("{at}.name"), "required with an inline secret");
                    return (None, None);
                };
                (
                    TsigKey {
                        name,
                        algorithm: algorithm.unwrap_or(TsigAlgorithm::HmacSha256),
                        secret,
                    },
                    None,
                )
            }
            (Some(file), None) => {
                let path = self.file_path(&file);
                if !self.opts.read_key_files {
                    return (None, Some(path));
                }
                let shown = path.display().to_string();
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        self.err(
                            format!("{at}.key_file"),
                            format!("cannot read key file \"{shown}\": {e}"),
                        );
                        return (None, Some(path));
                    }
                };
                match parse_key_file(&text) {
                    Err(e) => {
                        self.err(
                            format!("{at}.key_file"),
                            format!("key file \"{shown}\": {e}"),
                        );
                        return (None, Some(path));
                    }
                    Ok(KeyFile::Bare(secret)) => {
                        let Some(name) = raw.name else {
                            self.err(
                                format!("{at}.name"),
                                format!("required: key file \"{shown}\" holds a bare secret, not a named key"),
                            );
                            return (None, Some(path));
                        };
                        (
                            TsigKey {
                                name,
                                algorithm: algorithm.unwrap_or(TsigAlgorithm::HmacSha256),
                                secret,
                            },
                            Some(path),
                        )
                    }
                    Ok(KeyFile::Keys(keys)) => {
                        let names = || {
                            keys.iter()
                                .map(|k| format!("\"{}\"", k.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let found = match &raw.name {
                            Some(n) => keys
                                .iter()
                                .find(|k| k.name.trim_end_matches('.') == n.trim_end_matches('.')),
                            None if keys.len() == 1 => keys.first(),
                            None => {
                                self.err(
                                    format!("{at}.name"),
                                    format!(
                                        "required: key file \"{shown}\" holds several keys ({})",
                                        names()
                                    ),
                                );
                                return (None, Some(path));
                            }
                        };
                        let Some(k) = found else {
                            self.err(
                                format!("{at}.name"),
                                format!(
                                    "key file \"{shown}\" has no key \"{}\" (it has {})",
                                    raw.name.unwrap_or_default(),
                                    names()
                                ),
                            );
                            return (None, Some(path));
                        };
                        let file_alg = match TsigAlgorithm::parse(&k.algorithm) {
                            Ok(a) => a,
                            Err(e) => {
                                self.err(
                                    format!("{at}.key_file"),
                                    format!("key file \"{shown}\": {e}"),
                                );
                                return (None, Some(path));
                            }
                        };
                        if let Some(a) = algorithm
                            && a != file_alg
                        {
                            self.err(
                                format!("{at}.algorithm"),
                                format!("{a} does not match key \"{}\" in \"{shown}\", which is {file_alg}", k.name),
                            );
                        }
                        (
                            TsigKey {
                                name: k.name.clone(),
                                algorithm: file_alg,
                                secret: k.secret.clone(),
                            },
                            Some(path),
                        )
                    }
                }
            }
        };
        let (key, file) = key;
        if key.secret.len() < key.algorithm.output_len() {
            self.warn(
                at,
                format!(
                    "key \"{}\" is {} bytes, shorter than {}'s {} (RFC 8945 advises at least that); make one with tsig-keygen",
                    key.name,
                    key.secret.len(),
                    key.algorithm,
                    key.algorithm.output_len()
                ),
            );
        }
        (Some(key), file)
    }
}
