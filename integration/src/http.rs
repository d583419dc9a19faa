//! The few HTTP calls the suite makes: status documents and the demo backend's admin API.

use std::time::Duration;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// A node's status document (`GET <base>/status`), or the error.
pub fn status(base: &str) -> Result<serde_json::Value, String> {
    let url = format!("{}/status", base.trim_end_matches('/'));
    let mut resp = agent()
        .get(&url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_str(&body).map_err(|e| format!("{url}: {e}: {body}"))
}

/// `POST url` with an empty body; returns the HTTP status.
pub fn http_post(url: &str) -> Result<u16, String> {
    agent()
        .post(url)
        .send_empty()
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{url}: {e}"))
}
