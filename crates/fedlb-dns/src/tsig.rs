//! TSIG keys: raw secret bytes, a name and an HMAC algorithm.

use std::{fmt, str::FromStr};

use base64::Engine;
use hickory_proto::rr::{Name, TSigner, rdata::tsig::TsigAlgorithm as HickoryAlgorithm};

use crate::{Error, answers::fqdn};

/// Fudge (allowed clock difference) put into every signature, as RFC 8945 recommends.
pub const FUDGE_SECS: u16 = 300;

/// TSIG HMAC algorithms fedlb can sign with (the ones hickory supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TsigAlgorithm {
    /// hmac-sha256
    HmacSha256,
    /// hmac-sha384
    HmacSha384,
    /// hmac-sha512
    HmacSha512,
}

impl TsigAlgorithm {
    /// The name used by BIND, Knot and PowerDNS configs (`hmac-sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    pub(crate) fn to_hickory(self) -> HickoryAlgorithm {
        match self {
            TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TsigAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            other => Err(Error::Key {
                what: "algorithm".into(),
                reason: format!(
                    "\"{other}\" is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512"
                ),
            }),
        }
    }
}

/// A TSIG key. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Key name, fully qualified (`ddns-key.`); must match the server's.
    pub name: Name,
    /// HMAC algorithm.
    pub algorithm: TsigAlgorithm,
    /// The raw secret (not base64).
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_string())
            .field("algorithm", &self.algorithm)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

impl TsigKey {
    /// A key from its parts; the secret must not be empty.
    pub fn new(name: &str, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Result<Self, Error> {
        let name = fqdn(name)?;
        if secret.is_empty() {
            return Err(Error::Key {
                what: format!("\"{name}\""),
                reason: "empty secret".into(),
            });
        }
        Ok(Self {
            name,
            algorithm,
            secret,
        })
    }

    /// A key whose secret is given in base64, as every DNS server config writes it.
    pub fn from_base64(
        name: &str,
        algorithm: TsigAlgorithm,
        secret_b64: &str,
    ) -> Result<Self, Error> {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_b64.trim())
            .map_err(|e| Error::Key {
                what: format!("\"{name}\""),
                reason: format!("secret is not valid base64: {e}"),
            })?;
        Self::new(name, algorithm, secret)
    }

    /// The secret in base64, for writing server configs.
    pub fn secret_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.secret)
    }

    /// The key name without the trailing dot, as server configs spell it.
    pub fn config_name(&self) -> String {
        self.name.to_string().trim_end_matches('.').to_owned()
    }

    pub(crate) fn signer(&self) -> Result<TSigner, Error> {
        TSigner::new(
            self.secret.clone(),
            self.algorithm.to_hickory(),
            self.name.clone(),
            FUDGE_SECS,
        )
        .map_err(|e| Error::Key {
            what: format!("\"{}\"", self.name),
            reason: e.to_string(),
        })
    }
}

/// Parses the output of `tsig-keygen` (a BIND `key "name" { algorithm ...; secret "..."; };`
/// block; `#`, `//` and `/* */` comments allowed). The file must hold exactly one key.
pub fn parse_tsig_key_file(text: &str) -> Result<TsigKey, Error> {
    let err = |reason: String| Error::Key {
        what: "file".into(),
        reason,
    };
    let tokens = tokenize(text).map_err(err)?;
    let mut it = tokens.iter().map(String::as_str).peekable();
    let expect = |want: &str, it: &mut std::iter::Peekable<_>| -> Result<(), Error> {
        match Iterator::next(it) {
            Some(got) if got == want => Ok(()),
            Some(got) => Err(err(format!("expected \"{want}\", found \"{got}\""))),
            None => Err(err(format!(
                "expected \"{want}\", found the end of the file"
            ))),
        }
    };
    expect("key", &mut it)?;
    let name = it
        .next()
        .ok_or_else(|| err("key name missing".into()))?
        .to_owned();
    expect("{", &mut it)?;
    let (mut algorithm, mut secret) = (None, None);
    loop {
        match it.next() {
            Some("}") => break,
            Some("algorithm") => algorithm = it.next().map(str::to_owned),
            Some("secret") => secret = it.next().map(str::to_owned),
            Some(other) => return Err(err(format!("unexpected \"{other}\" in key \"{name}\""))),
            None => return Err(err(format!("key \"{name}\" is not closed with \"}}\""))),
        }
        expect(";", &mut it)?;
    }
    expect(";", &mut it)?;
    if let Some(extra) = it.next() {
        return Err(err(format!(
            "unexpected \"{extra}\" after key \"{name}\" (one key per file)"
        )));
    }
    let algorithm: TsigAlgorithm = algorithm
        .ok_or_else(|| err(format!("key \"{name}\" has no algorithm")))?
        .parse()?;
    let secret = secret.ok_or_else(|| err(format!("key \"{name}\" has no secret")))?;
    TsigKey::from_base64(&name, algorithm, &secret)
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("unterminated /* comment".into()),
                    }
                }
            }
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                tokens.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "{};\"".contains(c) {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYGEN: &str = "key \"ddns-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"yEJLwxMvZN+2Sokg00jb+a2uBusiYoLtflt2Nf6gHzQ=\";\n};\n";

    #[test]
    fn parses_tsig_keygen_output() {
        let key = parse_tsig_key_file(KEYGEN).unwrap();
        assert_eq!(key.name.to_string(), "ddns-key.");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key.secret.len(), 32);
        assert_eq!(key.secret[..2], [0xc8, 0x42]);
        assert_eq!(
            key.secret_base64(),
            "yEJLwxMvZN+2Sokg00jb+a2uBusiYoLtflt2Nf6gHzQ="
        );
        assert!(
            !format!("{key:?}").contains("yEJL"),
            "debug output hides the secret"
        );
    }

    #[test]
    fn accepts_comments_and_other_algorithms() {
        let text = "# made by tsig-keygen\n/* a\n comment */ key k2 { // line\n algorithm HMAC-SHA512; secret \"AAAA\"; };";
        let key = parse_tsig_key_file(text).unwrap();
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha512);
        assert_eq!(key.secret, [0, 0, 0]);
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        let cases = [
            ("", "expected \"key\", found the end of the file"),
            (
                "key k { algorithm hmac-md5; secret \"AAAA\"; };",
                "\"hmac-md5\" is not supported",
            ),
            ("key k { algorithm hmac-sha256; };", "has no secret"),
            (
                "key k { algorithm hmac-sha256; secret \"!!\"; };",
                "not valid base64",
            ),
            ("key k { secret \"AAAA\"; }; key j { };", "one key per file"),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\"",
                "expected \";\"",
            ),
        ];
        for (text, want) in cases {
            let got = parse_tsig_key_file(text).unwrap_err().to_string();
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }
}
