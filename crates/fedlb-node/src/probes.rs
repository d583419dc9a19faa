//! From the topology's probe declarations to the probe crate's specs, per server.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use axum::http::Uri;
use fedlb_probe::{HttpCheck, HttpTarget, LoadSource, ProbeSpec, RecordAs, TlsOptions, TlsRoots};
use fedlb_topology::{Probe, ProbeKind, Server, Service};

/// The spec of `probe` of `service` run against `server`.
pub fn spec(service: &Service, probe: &Probe, server: &Server) -> Result<ProbeSpec, String> {
    let ip = server.probe_target();
    let port = probe.port.unwrap_or(service.port);
    let addr = SocketAddr::new(ip, port);
    Ok(match &probe.kind {
        ProbeKind::Tcp => ProbeSpec::Tcp { target: addr },
        ProbeKind::Http(c) | ProbeKind::Https(c) => {
            let tls = matches!(probe.kind, ProbeKind::Https(_)).then(|| TlsOptions {
                roots: c
                    .ca_file
                    .as_deref()
                    .map_or(TlsRoots::System, |p: &Path| TlsRoots::CaFile(p.to_owned())),
                server_name: None,
            });
            ProbeSpec::Http(HttpCheck {
                target: HttpTarget {
                    addr,
                    path: c.path.clone(),
                    host: c
                        .host
                        .clone()
                        .or_else(|| Some(service.fqdn.trim_end_matches('.').to_owned())),
                    tls,
                },
                expect_status: c.expect_status..=c.expect_status,
                body_contains: c.body_contains.clone(),
            })
        }
        ProbeKind::Icmp => ProbeSpec::Icmp { target: ip },
        ProbeKind::Hops { max_hops } => ProbeSpec::Hops {
            target: ip,
            max_hops: *max_hops,
        },
        ProbeKind::Load(fedlb_topology::LoadSource::NginxStubStatus { url }) => {
            ProbeSpec::Load(LoadSource::NginxStubStatus(target_of(url, ip)?))
        }
        ProbeKind::Load(fedlb_topology::LoadSource::Prometheus {
            url,
            metric,
            labels,
            record_as,
        }) => ProbeSpec::Load(LoadSource::Prometheus {
            page: target_of(url, ip)?,
            metric: metric.clone(),
            labels: labels.clone(),
            record_as: match record_as {
                fedlb_topology::RecordAs::Pending => RecordAs::Pending,
                fedlb_topology::RecordAs::Connections => RecordAs::Connections,
                fedlb_topology::RecordAs::Metric => RecordAs::Metric(metric.clone()),
            },
        }),
        ProbeKind::Load(fedlb_topology::LoadSource::ProcNetTcp { port }) => {
            ProbeSpec::Load(LoadSource::ProcNetTcp { port: *port })
        }
        ProbeKind::Command { argv, metric } => ProbeSpec::Command {
            argv: argv.clone(),
            metric: metric.clone(),
        },
    })
}

/// An HTTP target from a URL. The host must be an IP literal (probes never resolve names);
/// the literal `server` stands for the server's probe address.
fn target_of(url: &str, server: IpAddr) -> Result<HttpTarget, String> {
    let uri = Uri::from_str(url).map_err(|e| format!("url {url:?}: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        other => {
            return Err(format!(
                "url {url:?}: scheme {other:?} is not http or https"
            ));
        }
    };
    let host = uri.host().ok_or_else(|| format!("url {url:?}: no host"))?;
    let ip = if host == "server" {
        server
    } else {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| {
                format!(
                    "url {url:?}: host {host:?} is not an IP address (probes do not resolve names)"
                )
            })?
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(HttpTarget {
        addr: SocketAddr::new(ip, port),
        path: uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.to_string()),
        host: None,
        tls: https.then_some(TlsOptions {
            roots: TlsRoots::System,
            server_name: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_targets() {
        let server: IpAddr = "127.0.0.9".parse().unwrap();
        let t = target_of("http://127.0.0.5:8080/stub_status", server).unwrap();
        assert_eq!(t.addr, "127.0.0.5:8080".parse().unwrap());
        assert_eq!(t.path, "/stub_status");
        let t = target_of("http://server:9100/metrics?x=1", server).unwrap();
        assert_eq!(t.addr, "127.0.0.9:9100".parse().unwrap());
        assert_eq!(t.path, "/metrics?x=1");
        let t = target_of("http://[::1]/m", server).unwrap();
        assert_eq!(t.addr, "[::1]:80".parse().unwrap());
        assert!(
            target_of("http://example.com/m", server)
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(
            target_of("ftp://127.0.0.1/m", server)
                .unwrap_err()
                .contains("scheme")
        );
    }
}
