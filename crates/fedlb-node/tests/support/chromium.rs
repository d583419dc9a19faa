//! Headless Chromium for the status page's tests: find it, run it on a URL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Chromium's binary (`CHROMIUM`, else `chromium`, `chromium-browser` or `google-chrome` on
/// the `PATH`).
pub fn chromium() -> Option<PathBuf> {
    let candidates = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .map(PathBuf::from),
        );
    for c in candidates {
        let found = if c.is_absolute() {
            c.is_file().then_some(c)
        } else {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(&c))
                    .find(|p| p.is_file())
            })
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Runs headless Chromium on `url` with `extra` arguments; its standard output.
pub async fn run_chromium(bin: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium did not finish within 90 s")
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Chromium, or `None` after saying loudly that `test` is skipped; under CI (env `CI` set)
/// a missing Chromium fails the test instead.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed (apt-get install -y chromium)"
        );
        eprintln!("SKIPPED {test}: chromium is not installed (apt-get install -y chromium)");
    }
    found
}
