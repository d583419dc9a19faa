//! `fedlb status URL`: a node's status as a table.

use anyhow::Context;
use fedlb_node::status::{Status, render_table};

/// Fetches `url/status` and prints it.
pub fn run(url: &str, json: bool) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    let endpoint = if base.ends_with("/status") {
        base.to_owned()
    } else {
        format!("{base}/status")
    };
    let body = ureq::get(&endpoint)
        .call()
        .with_context(|| format!("fetching {endpoint}"))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading {endpoint}"))?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let status: Status = serde_json::from_str(&body)
        .with_context(|| format!("{endpoint} did not answer a fedlb status document"))?;
    print!("{}", render_table(&status));
    Ok(())
}
