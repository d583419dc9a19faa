//! Text forms of the desired answers: JSON (file and command publishers) and a zone-file
//! fragment.

use std::{fmt::Write as _, net::IpAddr};

use serde::Serialize;

use crate::DesiredZone;

#[derive(Serialize)]
struct AnswersJson {
    zone: String,
    records: Vec<RecordJson>,
}

#[derive(Serialize)]
struct RecordJson {
    name: String,
    ttl: u32,
    a: Vec<IpAddr>,
    aaaa: Vec<IpAddr>,
}

/// The answers as pretty JSON with a trailing newline, in name order, e.g.
///
/// ```json
/// { "zone": "example.test.",
///   "records": [ { "name": "www.example.test.", "ttl": 30, "a": ["192.0.2.1"], "aaaa": [] } ] }
/// ```
///
/// The same answers always give the same bytes.
pub fn to_json(desired: &DesiredZone) -> String {
    let doc = AnswersJson {
        zone: desired.zone().to_string(),
        records: desired
            .records()
            .map(|s| RecordJson {
                name: s.name.to_string(),
                ttl: s.ttl,
                a: s.v4.iter().copied().map(IpAddr::V4).collect(),
                aaaa: s.v6.iter().copied().map(IpAddr::V6).collect(),
            })
            .collect(),
    };
    let mut text =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// The answers as zone-file lines (absolute names), to `$INCLUDE` from a zone file.
pub fn to_zone_fragment(desired: &DesiredZone) -> String {
    let mut text = format!(
        "; fedlb answers for zone {} (generated, do not edit)\n",
        desired.zone()
    );
    for set in desired.records() {
        for a in &set.v4 {
            let _ = writeln!(text, "{}\t{}\tIN\tA\t{a}", set.name, set.ttl);
        }
        for a in &set.v6 {
            let _ = writeln!(text, "{}\t{}\tIN\tAAAA\t{a}", set.name, set.ttl);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordSet;

    #[test]
    fn json_and_fragment() {
        let z = DesiredZone::new("example.test").unwrap().with(
            RecordSet::new("www.example.test", 30).unwrap().with_addrs([
                "192.0.2.2".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
                "192.0.2.1".parse().unwrap(),
            ]),
        );
        let json: serde_json::Value = serde_json::from_str(&to_json(&z)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"zone": "example.test.", "records": [
                {"name": "www.example.test.", "ttl": 30, "a": ["192.0.2.1", "192.0.2.2"], "aaaa": ["2001:db8::1"]}
            ]})
        );
        assert_eq!(
            to_zone_fragment(&z),
            "; fedlb answers for zone example.test. (generated, do not edit)\n\
             www.example.test.\t30\tIN\tA\t192.0.2.1\n\
             www.example.test.\t30\tIN\tA\t192.0.2.2\n\
             www.example.test.\t30\tIN\tAAAA\t2001:db8::1\n"
        );
    }
}
