//! The patent's "specialized objects": besides DNS, the global node writes its answers to
//! files and hands them to a command, when the topology asks — on change only.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use support::*;

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_also_go_to_files_and_a_command() {
    const B: u8 = 207;
    let out = tempfile::tempdir().unwrap();
    let (json, zone, cmd) = (
        out.path().join("answers.json"),
        out.path().join("answers.zone"),
        out.path().join("command-stdin.json"),
    );
    let outputs = format!(
        "file = {{ json = {:?}, zone_fragment = {:?} }}\ncommand = {{ argv = [\"sh\", \"-c\", \"cat > \\\"$0\\\"\", {:?}], timeout = \"5s\" }}\n",
        json.display().to_string(),
        zone.display().to_string(),
        cmd.display().to_string(),
    );
    let header = header(B, r#""least_loaded""#).replacen(
        "state_dir = \"dns\" }\n",
        &format!("state_dir = \"dns\" }}\n{outputs}"),
        1,
    );
    let toml = [
        header,
        farm(B, 2, "near", 10, &["n1", "n2"]),
        remote_server(B, 11, "n1"),
        remote_server(B, 12, "n2"),
    ]
    .concat();
    let mut w = World::new(&toml);
    for (name, host) in [("n1", 11), ("n2", 12)] {
        w.start_backend(name, ip(B, host)).await;
    }
    w.start_global();
    w.start_farm("near");
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;

    let expect_everywhere = |addr: &'static str| {
        let (json, zone, cmd) = (json.clone(), zone.clone(), cmd.clone());
        move || {
            let (json, zone, cmd) = (json.clone(), zone.clone(), cmd.clone());
            async move {
                let (j, z, c) = (read(&json)?, read(&zone)?, read(&cmd)?);
                let ok = j.contains(addr)
                    && z.contains("www.t.test.")
                    && z.contains(addr)
                    && c.contains(addr);
                if ok {
                    Ok(())
                } else {
                    Err(format!("json {j}\nzone {z}\ncommand {c}"))
                }
            }
        }
    };
    wait_for(
        "the files and the command to get the answer",
        expect_everywhere("127.0.207.11"),
    )
    .await;

    // the answer moves: the files and the command follow
    w.kill_backend("n1").await;
    wait_for(
        "the files and the command to follow the new answer",
        expect_everywhere("127.0.207.12"),
    )
    .await;
    assert!(
        !read(&json).unwrap().contains("127.0.207.11"),
        "the old answer is gone"
    );
    w.shutdown().await;
}
