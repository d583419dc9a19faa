//! A BIND 9 primary for the zone, started by the benchmark on a loopback address.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;

use super::ZONE;
use crate::dns::Poller;

/// A running `named`.
pub struct Bind {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The TSIG key name shared by BIND and the global node.
pub const KEY_NAME: &str = "fedlb-bench";

/// Writes `tsig.key` (the `tsig-keygen` format) into `dir` and returns its file name.
pub fn write_key(dir: &Path) -> anyhow::Result<(String, String)> {
    let secret: [u8; 32] = rand::random();
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let text =
        format!("key \"{KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{b64}\";\n}};\n");
    std::fs::write(dir.join("tsig.key"), &text)?;
    Ok(("tsig.key".to_owned(), b64))
}

impl Bind {
    /// Starts `named -g` for the zone in `dir/bind`, accepting updates signed with the key.
    pub fn start(dir: &Path, addr: SocketAddr, secret_b64: &str) -> anyhow::Result<Bind> {
        let named = ["/usr/sbin/named", "/usr/bin/named"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("named not found: apt-get install bind9")?;
        let d = dir.join("bind");
        std::fs::create_dir_all(&d)?;
        let zone = ZONE.trim_end_matches('.');
        std::fs::write(
            d.join("zone.db"),
            format!(
                "$TTL 300\n{ZONE} IN SOA ns1.{ZONE} hostmaster.{ZONE} ( 1 3600 600 86400 300 )\n{ZONE} IN NS ns1.{ZONE}\nns1.{ZONE} IN A 127.0.0.1\n"
            ),
        )?;
        let conf = format!(
            r#"key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{secret_b64}"; }};
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile none;
    listen-on port {port} {{ {ip}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
zone "{zone}" {{
    type primary;
    file "{dir}/zone.db";
    update-policy {{ grant {KEY_NAME} zonesub ANY; }};
}};
"#,
            dir = d.display(),
            port = addr.port(),
            ip = addr.ip(),
        );
        std::fs::write(d.join("named.conf"), conf)?;
        let child = Command::new(named)
            .arg("-g")
            .arg("-c")
            .arg(d.join("named.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("named.log"))?)
            .spawn()
            .context("starting named")?;
        let b = Bind { child, addr };
        let mut p = Poller::new(addr, &format!("ns1.{ZONE}"))?;
        for _ in 0..100 {
            if p.query(Duration::from_millis(100))
                .is_ok_and(|a| !a.is_empty())
            {
                return Ok(b);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "named did not answer on {addr}; see {}",
            d.join("named.log").display()
        )
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
