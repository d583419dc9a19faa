//! Humane durations: `"500ms"`, `"2s"`, `"1m30s"`, `"1.5h"`.

use std::time::Duration;

/// Parses a humane duration: one or more `<number><unit>` parts (`"1m30s"`), spaces
/// allowed between them. Units: `ns`, `us`/`µs`, `ms`, `s`, `m`/`min`, `h`, `d`. A bare
/// `"0"` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map_or(rest.len(), |(i, _)| i);
        if num_len == 0 {
            return Err(format!("expected a number at \"{rest}\""));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("bad number \"{}\"", &rest[..num_len]))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| !c.is_alphabetic())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => return Err("missing unit (use ms, s, m, h or d)".to_owned()),
            other => return Err(format!("unknown unit \"{other}\" (use ms, s, m, h or d)")),
        };
        total += number * seconds;
        rest = rest[unit_len..].trim_start();
    }
    seconds_to_duration(total)
}

/// Like [`parse_duration`], and a bare number is seconds (`"2.5"` is 2.5 s): scenario
/// files for `fedlb simulate` accept it; topologies ask for the unit.
pub fn parse_duration_or_seconds(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) => seconds_to_duration(seconds),
        Err(_) => parse_duration(text),
    }
}

/// A number of seconds as a duration: finite, non-negative and not too large.
pub fn seconds_to_duration(seconds: f64) -> Result<Duration, String> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err("must be a non-negative duration".to_owned());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| "duration too large".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humane_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("250 ms"), Ok(ms(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn bare_seconds_only_where_asked_for() {
        assert_eq!(
            parse_duration_or_seconds("2.5"),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(
            parse_duration_or_seconds("1m30s"),
            Ok(Duration::from_secs(90))
        );
        assert!(parse_duration_or_seconds("-1").is_err());
        assert!(parse_duration_or_seconds("1e300").is_err());
        assert!(parse_duration("2.5").is_err());
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("unknown unit \"parsecs\"")
        );
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
