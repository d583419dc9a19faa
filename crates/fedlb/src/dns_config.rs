//! `fedlb dns-config bind|knot TOPOLOGY`: DNS server configuration written from the topology so
//! that nobody writes it by hand.
//!
//! - With `dns.embedded` (the built-in server as a hidden primary): the secondary's `key` and
//!   `zone` (BIND: `type secondary` with `primaries { ADDR port P key K; }`; Knot: `key`,
//!   `remote`, `acl` for its NOTIFY, `zone` with `master`), from `dns.embedded.secondaries`
//!   and `transfer_key`. The text comes from `fedlb_dns::secondary`, which the tests start real
//!   secondaries from.
//! - With `dns.servers` (`bind` only): the `key` and `view` blocks BIND needs to serve each
//!   region of a topology its own answers, as below.
//!
//! One view per region whose answers go to `dns.servers` (regions with servers of their own
//! are not views: they are separate primaries), then the default view. Each view holds its
//! own copy of the zone, updated by fedlb with the region's TSIG key; BIND matches views in
//! order, first match wins, so each view's `match-clients` is built to give exactly fedlb's
//! rule:
//!
//! 1. an UPDATE signed with a region's key lands in that region's view and no other (`key
//!    <own>;` first, then `!key <other>;` for every other key, so that an update signed by
//!    another region's key from an address of this region does not land here);
//! 2. the most specific prefix wins across regions: a more specific prefix of another
//!    region inside one of this region's prefixes is excluded (`!prefix;`) before the
//!    region's own prefixes;
//! 3. prefixes beat geoip, and a country beats a continent: before its `geoip` entries a
//!    region excludes every other region's prefixes, and before a continent every other
//!    region's countries;
//! 4. everyone else gets the default view (`any;`), updated with the zone's key.
//!
//! With several zones (`dns.zones`), every view holds every zone; the default view's copy of
//! a zone is updated with that zone's key (its own `tsig`, else `dns.tsig`), so each zone key
//! selects the default view like `dns.tsig` does.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use fedlb_topology::{DnsServer, Region, Topology, TsigKey};

/// What `fedlb dns-config bind` writes besides the topology.
#[derive(Clone, Debug)]
pub struct BindOptions {
    /// Where each view's zone file lives (`<dir>/<zone>.<view>.db`).
    pub zone_dir: PathBuf,
}

/// The DNS servers `fedlb dns-config` writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// BIND 9: views for `dns.servers`, or a secondary of the embedded server.
    Bind,
    /// Knot 3: a secondary of the embedded server.
    Knot,
}

/// What `fedlb dns-config` writes besides the topology.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where zone files live (default: /var/lib/bind or /var/lib/knot).
    pub zone_dir: Option<PathBuf>,
    /// The embedded server's address as secondaries reach it (default: `dns.embedded.listen`).
    pub primary: Option<SocketAddr>,
}

/// Loads `topology` (reading its key files) and prints `server`'s configuration for it.
pub fn run(topology: &Path, server: Server, options: &Options) -> anyhow::Result<()> {
    let loaded = fedlb_topology::load(topology).map_err(|e| {
        let problems: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", problems.join("\n"))
    })?;
    let t = &loaded.topology;
    let zone_dir = options.zone_dir.clone().unwrap_or_else(|| {
        PathBuf::from(match server {
            Server::Bind => "/var/lib/bind",
            Server::Knot => "/var/lib/knot",
        })
    });
    let text = match (&t.dns.server, server) {
        (DnsServer::Embedded { .. }, _) => secondary_config(t, server, &zone_dir, options.primary),
        (DnsServer::Rfc2136 { .. }, Server::Bind) => bind_config(t, &BindOptions { zone_dir }),
        (DnsServer::Rfc2136 { .. }, Server::Knot) => Err(anyhow::anyhow!(
            "dns.servers: fedlb updates these servers directly; `knot` prints the configuration of a Knot secondary of the embedded server (dns.embedded), and Knot has no views (a region takes primaries of its own: regions[].dns.servers)"
        )),
    }
    .with_context(|| format!("{}", topology.display()))?;
    print!("{text}");
    Ok(())
}

/// The configuration of a secondary of the embedded server: one stanza, the same for every
/// listed secondary.
pub fn secondary_config(
    t: &Topology,
    server: Server,
    zone_dir: &Path,
    primary: Option<SocketAddr>,
) -> anyhow::Result<String> {
    let DnsServer::Embedded {
        listen,
        secondaries,
        transfer_key,
        ..
    } = &t.dns.server
    else {
        bail!("dns: the topology does not use the embedded server");
    };
    if secondaries.is_empty() {
        bail!(
            "dns.embedded.secondaries: empty, so the embedded server refuses every transfer; list the secondaries' addresses (and a transfer_key) first"
        );
    }
    let Some(key) = transfer_key else {
        bail!("dns.embedded.transfer_key: missing (secondaries sign their transfers with it)");
    };
    let primary = primary.unwrap_or(*listen);
    if primary.ip().is_unspecified() {
        bail!(
            "dns.embedded.listen: {listen} is every local address; give --primary with the address the secondaries reach the embedded server at"
        );
    }
    let zone = t.dns.zone.trim_end_matches('.');
    let file = zone_dir.join(format!("{zone}.db"));
    let spec = fedlb_dns::SecondarySpec {
        zone,
        primary,
        key,
        file: &file,
    };
    let list: Vec<String> = secondaries.iter().map(ToString::to_string).collect();
    let (comment, body) = match server {
        Server::Bind => ("//", fedlb_dns::bind_secondary(&spec)),
        Server::Knot => ("#", fedlb_dns::knot_secondary(&spec)),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{comment} Secondary of fedlb's embedded server for zone \"{zone}\" (topology \"{}\"), written by\n\
         {comment} `fedlb dns-config`. The same text for each secondary listed in dns.embedded.secondaries\n\
         {comment} ({}): the primary serves transfers only to those addresses, signed with key \"{}\",\n\
         {comment} and sends NOTIFY to them after every change. Add it to the server's configuration.",
        t.name,
        list.join(", "),
        key.config_name()
    );
    out.push_str(&body);
    Ok(out)
}

/// BIND's `key` and `view` blocks for `t`.
pub fn bind_config(t: &Topology, options: &BindOptions) -> anyhow::Result<String> {
    if matches!(t.dns.server, DnsServer::Embedded { .. }) {
        bail!(
            "dns: the topology publishes to the embedded server, not to BIND; set dns.servers to BIND's address to use BIND views"
        );
    }
    let zone = t.dns.zone.trim_end_matches('.');
    let Some(zone_key) = &t.dns.tsig else {
        bail!("dns.tsig: BIND views need the zone's key (its default view is updated with it)");
    };
    // each zone and the key its default view is updated with
    let zones: Vec<(&str, &TsigKey)> = t
        .dns
        .zones
        .iter()
        .map(|z| {
            (
                z.name.trim_end_matches('.'),
                z.tsig.as_ref().unwrap_or(zone_key),
            )
        })
        .collect();
    // the regions BIND serves as views: those without primaries of their own
    let views: Vec<&Region> = t
        .regions
        .values()
        .filter(|r| r.dns_servers.is_empty())
        .collect();
    if views.is_empty() {
        bail!("regions: no region is published to dns.servers, so BIND needs no views");
    }
    let mut keys: Vec<(&TsigKey, Option<&Path>)> = vec![(zone_key, t.dns.tsig_file.as_deref())];
    for z in &t.dns.zones {
        if let Some(key) = &z.tsig
            && !keys.iter().any(|(k, _)| k.name == key.name)
        {
            keys.push((key, z.tsig_file.as_deref()));
        }
    }
    // the keys that select the default view: the zones' keys
    let default_keys = keys.len();
    for r in &views {
        let Some(key) = &r.tsig else {
            bail!(
                "regions.{}.tsig: a region served as a BIND view needs its own key",
                r.id
            );
        };
        if key.name == zone_key.name || keys.iter().any(|(k, _)| k.name == key.name) {
            bail!(
                "regions.{}.tsig: key \"{}\" is already another view's key; BIND selects a view by the key that signs an update, so each view needs its own",
                r.id,
                key.name
            );
        }
        keys.push((key, r.tsig_file.as_deref()));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# BIND configuration for the regions of topology \"{}\", written by `fedlb dns-config bind`.\n\
         # Include it in named.conf in place of any `zone \"{zone}\"` statement (or of any zone\n\
         # listed in dns.zones): once views exist,\n\
         # every zone must be inside a view. Each view's zone file must exist before named starts\n\
         # (a SOA and an NS record, as for any primary); fedlb fills in the answers.",
        t.name
    );
    let _ = writeln!(out);
    for (key, file) in &keys {
        match file {
            Some(path) => {
                let _ = writeln!(out, "include \"{}\";", path.display());
            }
            None => {
                let _ = writeln!(
                    out,
                    "key \"{}\" {{ algorithm {}; secret \"{}\"; }};",
                    key_name(key),
                    key.algorithm.as_str(),
                    base64::engine::general_purpose::STANDARD.encode(&key.secret)
                );
            }
        }
    }
    if views
        .iter()
        .any(|r| !r.countries.is_empty() || !r.continents.is_empty())
    {
        let _ = writeln!(
            out,
            "\n# Regions placed by geography need BIND built with MaxMind support (Debian's is) and\n\
             # the database's directory in the options block: geoip-directory \"/usr/share/GeoIP\";"
        );
    }

    for r in &views {
        let own = r.tsig.as_ref().expect("checked above");
        let mut matches: Vec<String> = vec![format!("key \"{}\"", key_name(own))];
        matches.extend(
            keys.iter()
                .filter(|(k, _)| k.name != own.name)
                .map(|(k, _)| format!("!key \"{}\"", key_name(k))),
        );
        let others: Vec<&Region> = t.regions.values().filter(|o| o.id != r.id).collect();
        // a more specific prefix of another region inside one of ours is theirs
        for o in &others {
            for q in &o.clients {
                if r.clients.iter().any(|p| p.contains(q) && p != q) {
                    push_once(&mut matches, format!("!{q}"));
                }
            }
        }
        matches.extend(r.clients.iter().map(ToString::to_string));
        if !r.countries.is_empty() || !r.continents.is_empty() {
            // prefixes beat geography: every other region's prefixes first
            for o in &others {
                for q in &o.clients {
                    push_once(&mut matches, format!("!{q}"));
                }
            }
            for c in &r.countries {
                matches.push(format!("geoip country {c}"));
            }
            if !r.continents.is_empty() {
                // a country beats a continent
                for o in &others {
                    for c in &o.countries {
                        push_once(&mut matches, format!("!geoip country {c}"));
                    }
                }
                for c in &r.continents {
                    matches.push(format!("geoip continent {}", c.code()));
                }
            }
        }
        let in_view: Vec<(&str, &TsigKey)> = zones.iter().map(|(z, _)| (*z, own)).collect();
        view(&mut out, r.id.as_str(), &matches, &in_view, options);
    }
    let mut matches: Vec<String> = keys
        .iter()
        .skip(default_keys)
        .map(|(k, _)| format!("!key \"{}\"", key_name(k)))
        .collect();
    matches.push("any".to_owned());
    view(&mut out, "default", &matches, &zones, options);
    Ok(out)
}

/// One view: its `match-clients` and every zone, each updated with its key.
fn view(
    out: &mut String,
    name: &str,
    matches: &[String],
    zones: &[(&str, &TsigKey)],
    options: &BindOptions,
) {
    let _ = writeln!(out, "\nview \"{name}\" {{");
    let _ = writeln!(out, "  match-clients {{ {}; }};", matches.join("; "));
    for (zone, key) in zones {
        let _ = writeln!(
            out,
            "  zone \"{zone}\" {{\n    type primary;\n    file \"{}\";\n    update-policy {{ grant \"{}\" zonesub ANY; }};\n  }};",
            options.zone_dir.join(format!("{zone}.{name}.db")).display(),
            key_name(key)
        );
    }
    let _ = writeln!(out, "}};");
}

fn push_once(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The key's name as BIND writes it: no trailing dot.
fn key_name(key: &TsigKey) -> &str {
    key.name.trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(text: &str) -> Topology {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::write(dir.path().join("geo.mmdb"), b"").unwrap();
        fedlb_topology::load(&path)
            .unwrap_or_else(|e| panic!("{:?}", e.problems()))
            .topology
    }

    const BASE: &str = r#"
[global]
listen = "127.0.0.1:7400"
status = "127.0.0.1:7480"
[dns]
zone = "demo.test."
servers = ["127.0.0.1:5354"]
tsig = { name = "zone-key", algorithm = "hmac-sha256", secret = "yEJLwxMvZN+2Sokg00jb+a2uBusiYoLtflt2Nf6gHzQ=" }
[[services]]
name = "www"
fqdn = "www.demo.test."
port = 80
[[services.probes]]
kind = "tcp"
[[farms]]
name = "eu-west"
listen = "127.0.0.2:7401"
status = "127.0.0.2:7481"
[[farms.servers]]
name = "eu-1"
address = "127.0.0.11"
services = ["www"]
[[farms]]
name = "us-east"
listen = "127.0.0.3:7401"
status = "127.0.0.3:7481"
[[farms.servers]]
name = "us-1"
address = "127.0.0.21"
services = ["www"]
"#;

    fn region(name: &str, clients: &str, extra: &str) -> String {
        format!(
            "[[regions]]\nname = \"{name}\"\nclients = [{clients}]\ndistance_ms = {{ eu-west = 10, us-east = 90 }}\n\
             tsig = {{ name = \"{name}-key\", algorithm = \"hmac-sha256\", secret = \"c2VjcmV0LW9mLXRoZS1yZWdpb24ta2V5LTAxMjM0NTY=\" }}\n{extra}\n"
        )
    }

    fn options() -> BindOptions {
        BindOptions {
            zone_dir: "/var/lib/bind".into(),
        }
    }

    #[test]
    fn each_view_takes_its_key_and_its_prefixes_and_the_default_takes_the_rest() {
        let t = topology(&format!(
            "{BASE}{}{}",
            region("eu", "\"127.0.10.0/24\"", ""),
            region("us", "\"127.0.20.0/24\", \"2001:db8::/32\"", "")
        ));
        let conf = bind_config(&t, &options()).unwrap();
        assert!(conf.contains(r#"key "zone-key" { algorithm hmac-sha256; secret "yEJLwxMvZN+2Sokg00jb+a2uBusiYoLtflt2Nf6gHzQ="; };"#), "{conf}");
        assert!(conf.contains(r#"key "eu-key" { algorithm hmac-sha256;"#));
        assert!(
            conf.contains(
                r#"match-clients { key "eu-key"; !key "zone-key"; !key "us-key"; 127.0.10.0/24; };"#
            ),
            "{conf}"
        );
        assert!(conf.contains(r#"match-clients { key "us-key"; !key "zone-key"; !key "eu-key"; 127.0.20.0/24; 2001:db8::/32; };"#), "{conf}");
        assert!(
            conf.contains(r#"match-clients { !key "eu-key"; !key "us-key"; any; };"#),
            "{conf}"
        );
        assert!(conf.contains(r#"file "/var/lib/bind/demo.test.eu.db";"#));
        assert!(conf.contains(r#"update-policy { grant "eu-key" zonesub ANY; };"#));
        assert!(conf.contains(r#"update-policy { grant "zone-key" zonesub ANY; };"#));
        // views in the topology's order, the default last
        let eu = conf.find(r#"view "eu""#).unwrap();
        let us = conf.find(r#"view "us""#).unwrap();
        let default = conf.find(r#"view "default""#).unwrap();
        assert!(eu < us && us < default);
    }

    #[test]
    fn with_several_zones_every_view_holds_every_zone_each_default_with_its_zone_key() {
        let base = BASE
            .replace(
                "zone = \"demo.test.\"\n",
                "zones = [{ name = \"demo.test.\" }, { name = \"other.test.\", tsig = { name = \"other-key\", algorithm = \"hmac-sha256\", secret = \"b3RoZXItem9uZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==\" } }]\n",
            )
            .replace(
                "[[services.probes]]",
                "[[services.probes]]\nkind = \"tcp\"\n[[services]]\nname = \"api\"\nfqdn = \"api.other.test.\"\nport = 80\n[[services.probes]]",
            )
            .replace("services = [\"www\"]", "services = [\"www\", \"api\"]");
        let t = topology(&format!("{base}{}", region("eu", "\"127.0.10.0/24\"", "")));
        let conf = bind_config(&t, &options()).unwrap();
        assert!(
            conf.contains(r#"key "other-key" { algorithm hmac-sha256;"#),
            "{conf}"
        );
        // the other zone's key selects the default view, like the zone key
        assert!(
            conf.contains(r#"match-clients { key "eu-key"; !key "zone-key"; !key "other-key"; 127.0.10.0/24; };"#),
            "{conf}"
        );
        assert!(
            conf.contains(r#"match-clients { !key "eu-key"; any; };"#),
            "{conf}"
        );
        for zone in ["demo.test", "other.test"] {
            for view in ["eu", "default"] {
                assert!(
                    conf.contains(&format!("file \"/var/lib/bind/{zone}.{view}.db\";")),
                    "{zone} in {view}: {conf}"
                );
            }
        }
        let default = &conf[conf.find(r#"view "default""#).unwrap()..];
        assert!(default.contains("zone \"other.test\" {\n    type primary;\n    file \"/var/lib/bind/other.test.default.db\";\n    update-policy { grant \"other-key\" zonesub ANY; };"), "{default}");
        assert!(
            default.contains(r#"grant "zone-key" zonesub ANY;"#),
            "{default}"
        );
        let eu = &conf[conf.find(r#"view "eu""#).unwrap()..conf.find(r#"view "default""#).unwrap()];
        assert_eq!(
            eu.matches(r#"grant "eu-key" zonesub ANY;"#).count(),
            2,
            "{eu}"
        );
    }

    #[test]
    fn a_nested_prefix_of_another_region_is_kept_out_and_geography_comes_last() {
        let base = BASE.replace("[dns]\n", "[dns]\ngeoip_database = \"geo.mmdb\"\n");
        let t = topology(&format!(
            "{base}{}{}",
            region("eu", "\"10.0.0.0/8\"", "geoip = { continents = [\"EU\"] }"),
            region("lab", "\"10.1.0.0/16\"", "geoip = { countries = [\"DE\"] }"),
        ));
        let conf = bind_config(&t, &options()).unwrap();
        assert!(
            conf.contains(r#"match-clients { key "eu-key"; !key "zone-key"; !key "lab-key"; !10.1.0.0/16; 10.0.0.0/8; !geoip country DE; geoip continent EU; };"#),
            "{conf}"
        );
        assert!(
            conf.contains(r#"match-clients { key "lab-key"; !key "zone-key"; !key "eu-key"; 10.1.0.0/16; !10.0.0.0/8; geoip country DE; };"#),
            "{conf}"
        );
        assert!(conf.contains("geoip-directory"));
    }

    #[test]
    fn refuses_what_bind_views_cannot_do() {
        let embedded = topology(&format!(
            "{}{}",
            BASE.replace(
                "servers = [\"127.0.0.1:5354\"]",
                "embedded = { listen = \"127.0.0.1:5300\", state_dir = \"dns\" }"
            ),
            region("eu", "\"127.0.10.0/24\"", "")
        ));
        let e = bind_config(&embedded, &options()).unwrap_err().to_string();
        assert!(e.contains("embedded server"), "{e}");

        let none = topology(BASE);
        let e = bind_config(&none, &options()).unwrap_err().to_string();
        assert!(e.contains("no region"), "{e}");
    }

    fn embedded(listen: &str, extra: &str) -> Topology {
        topology(&BASE.replace(
            "servers = [\"127.0.0.1:5354\"]",
            &format!("embedded = {{ listen = \"{listen}\", state_dir = \"dns\"{extra} }}"),
        ))
    }

    const SECONDARIES: &str = r#", secondaries = ["192.0.2.53:53", "192.0.2.54:53"], transfer_key = { name = "fedlb-transfer", secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }"#;

    #[test]
    fn prints_the_secondary_of_the_embedded_server() {
        let t = embedded("192.0.2.1:5353", SECONDARIES);
        let dir = Path::new("/srv/dns");
        let bind = secondary_config(&t, Server::Bind, dir, None).unwrap();
        assert!(
            bind.contains("// Secondary of fedlb's embedded server for zone \"demo.test\""),
            "{bind}"
        );
        assert!(bind.contains("(192.0.2.53:53, 192.0.2.54:53)"), "{bind}");
        assert!(bind.contains("key \"fedlb-transfer\" { algorithm hmac-sha256; secret \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"; };"), "{bind}");
        assert!(bind.contains("zone \"demo.test\" {\n    type secondary;\n    primaries { 192.0.2.1 port 5353 key \"fedlb-transfer\"; };\n    file \"/srv/dns/demo.test.db\";\n};"), "{bind}");
        let knot = secondary_config(&t, Server::Knot, dir, None).unwrap();
        assert!(knot.starts_with("# Secondary"), "{knot}");
        assert!(
            knot.contains("    address: 192.0.2.1@5353\n    key: fedlb-transfer\n"),
            "{knot}"
        );
        assert!(
            knot.contains("  - domain: demo.test\n    master: fedlb-primary\n"),
            "{knot}"
        );
        // --primary overrides the listen address
        let other = secondary_config(
            &t,
            Server::Bind,
            dir,
            Some("198.51.100.1:53".parse().unwrap()),
        )
        .unwrap();
        assert!(
            other.contains("primaries { 198.51.100.1 port 53 key"),
            "{other}"
        );
    }

    #[test]
    fn a_secondary_needs_secondaries_and_a_reachable_primary() {
        let dir = Path::new("/srv/dns");
        let none = embedded("192.0.2.1:5353", "");
        let e = secondary_config(&none, Server::Knot, dir, None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("dns.embedded.secondaries: empty"), "{e}");
        let any = embedded("0.0.0.0:5353", SECONDARIES);
        let e = secondary_config(&any, Server::Bind, dir, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("give --primary"), "{e}");
        assert!(
            secondary_config(
                &any,
                Server::Bind,
                dir,
                Some("192.0.2.1:5353".parse().unwrap())
            )
            .is_ok()
        );
    }
}
