//! TSIG keys: the one key type and algorithm type of the workspace, and the one parser of
//! key files (the `key "name" { algorithm …; secret "…"; };` block `tsig-keygen` writes, or a
//! bare base64 secret). fedlb-dns signs with these keys; it turns [`TsigAlgorithm`] into
//! hickory's algorithm in one function and never parses key files itself.

use std::fmt;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The HMAC algorithms fedlb signs updates with (RFC 8945; all DNS servers we target
/// accept them). MD5 and SHA-1 are refused on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (what `tsig-keygen` writes by default).
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The name as BIND writes it (`hmac-sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The length of the HMAC output in bytes; RFC 8945 advises keys at least this long.
    pub fn output_len(self) -> usize {
        match self {
            TsigAlgorithm::HmacSha256 => 32,
            TsigAlgorithm::HmacSha384 => 48,
            TsigAlgorithm::HmacSha512 => 64,
        }
    }

    /// Parses `hmac-sha256` (any case, trailing dot allowed).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            _ => Err(format!(
                "unsupported tsig algorithm \"{s}\" (use hmac-sha256, hmac-sha384 or hmac-sha512)"
            )),
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TSIG key, ready to sign RFC 2136 updates.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key name (a domain name, as the DNS server knows it).
    pub name: String,
    /// The algorithm.
    pub algorithm: TsigAlgorithm,
    /// The raw secret (base64-decoded).
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never print the secret, not even in debug logs
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

/// Why a TSIG key cannot be made from its parts. Never shows the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tsig key \"{name}\": {reason}")]
pub struct TsigKeyError {
    /// The key name as given.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl TsigKey {
    /// A key from its parts: the name must not be empty, nor the secret.
    pub fn new(
        name: impl Into<String>,
        algorithm: TsigAlgorithm,
        secret: Vec<u8>,
    ) -> Result<Self, TsigKeyError> {
        let name = name.into();
        let err = |reason: &str| TsigKeyError {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        if name.trim_end_matches('.').trim().is_empty() {
            return Err(err("empty name"));
        }
        if secret.is_empty() {
            return Err(err("empty secret"));
        }
        Ok(Self {
            name,
            algorithm,
            secret,
        })
    }

    /// The secret in base64, as DNS server configs write it.
    pub fn secret_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.secret)
    }

    /// The key name as server configs spell it: lowercase, without the trailing dot.
    pub fn config_name(&self) -> String {
        self.name.trim_end_matches('.').to_ascii_lowercase()
    }
}

/// A key as read from a file, before the topology's own fields are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileKey {
    pub name: String,
    pub algorithm: String,
    pub secret: Vec<u8>,
}

/// Decodes standard base64, padded or not, ignoring whitespace inside (BIND splits long
/// secrets across lines).
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("empty secret".to_owned());
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    engine
        .decode(compact.as_bytes())
        // never the offending character: it is part of a secret
        .map_err(|e| {
            let why = match e {
                base64::DecodeError::InvalidByte(at, _) => {
                    format!("a character that is not base64 at offset {at}")
                }
                base64::DecodeError::InvalidLastSymbol(at, _) => {
                    format!("a bad last character at offset {at}")
                }
                base64::DecodeError::InvalidLength(_) => "a length that is not base64".to_owned(),
                base64::DecodeError::InvalidPadding => "bad padding".to_owned(),
            };
            format!("secret is not valid base64 ({why})")
        })
}

/// What a key file holds: named keys (tsig-keygen format) or one bare secret.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyFile {
    Keys(Vec<FileKey>),
    Bare(Vec<u8>),
}

/// Parses a key file: a `key` block as `tsig-keygen` / `ddns-confgen` write it, or the
/// bare base64 secret alone.
pub(crate) fn parse_key_file(text: &str) -> Result<KeyFile, String> {
    let tokens = tokenize(text)?;
    if !tokens
        .iter()
        .any(|t| matches!(t, Token::Word(w, _) if w == "key"))
    {
        let bare: Vec<&Token> = tokens.iter().collect();
        return match bare.as_slice() {
            [Token::Word(w, _)] | [Token::Quoted(w, _)] => decode_secret(w).map(KeyFile::Bare),
            [] => Err("file is empty".to_owned()),
            _ => Err("neither a `key \"name\" { … };` block nor a bare base64 secret".to_owned()),
        };
    }
    let mut keys = Vec::new();
    let mut it = tokens.into_iter().peekable();
    while let Some(tok) = it.next() {
        let line = tok.line();
        match tok {
            Token::Word(w, _) if w == "key" => {}
            other => {
                return Err(format!(
                    "line {}: expected `key`, found {}",
                    other.line(),
                    other
                ));
            }
        }
        let name = match it.next() {
            Some(Token::Quoted(n, _) | Token::Word(n, _)) => n,
            _ => return Err(format!("line {line}: `key` needs a name")),
        };
        expect(&mut it, "{", line)?;
        let (mut algorithm, mut secret) = (None, None);
        loop {
            match it.next() {
                Some(Token::Punct('}', _)) => break,
                Some(Token::Word(w, l)) if w == "algorithm" => {
                    match it.next() {
                        Some(Token::Word(a, _) | Token::Quoted(a, _)) => algorithm = Some(a),
                        _ => return Err(format!("line {l}: `algorithm` needs a value")),
                    }
                    expect(&mut it, ";", l)?;
                }
                Some(Token::Word(w, l)) if w == "secret" => {
                    match it.next() {
                        Some(Token::Quoted(s, _) | Token::Word(s, _)) => {
                            secret = Some(decode_secret(&s).map_err(|e| format!("line {l}: {e}"))?)
                        }
                        _ => return Err(format!("line {l}: `secret` needs a value")),
                    }
                    expect(&mut it, ";", l)?;
                }
                Some(other) => {
                    return Err(format!(
                        "line {}: unexpected {} in key \"{name}\"",
                        other.line(),
                        other
                    ));
                }
                None => {
                    return Err(format!(
                        "line {line}: key \"{name}\" is not closed with `}};`"
                    ));
                }
            }
        }
        expect(&mut it, ";", line)?;
        let algorithm = algorithm.ok_or_else(|| format!("key \"{name}\" has no `algorithm`"))?;
        let secret = secret.ok_or_else(|| format!("key \"{name}\" has no `secret`"))?;
        keys.push(FileKey {
            name,
            algorithm,
            secret,
        });
    }
    Ok(KeyFile::Keys(keys))
}

#[derive(Debug)]
enum Token {
    Word(String, usize),
    Quoted(String, usize),
    Punct(char, usize),
}

impl Token {
    fn line(&self) -> usize {
        match self {
            Token::Word(_, l) | Token::Quoted(_, l) | Token::Punct(_, l) => *l,
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w, _) => write!(f, "`{w}`"),
            Token::Quoted(q, _) => write!(f, "\"{q}\""),
            Token::Punct(c, _) => write!(f, "`{c}`"),
        }
    }
}

fn expect(it: &mut impl Iterator<Item = Token>, punct: &str, line: usize) -> Result<(), String> {
    match it.next() {
        Some(Token::Punct(c, _)) if punct.starts_with(c) => Ok(()),
        Some(other) => Err(format!(
            "line {}: expected `{punct}`, found {other}",
            other.line()
        )),
        None => Err(format!(
            "line {line}: expected `{punct}` before the end of the file"
        )),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            prev = ch;
                        }
                        None => return Err("unterminated /* comment".to_owned()),
                    }
                }
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            s.push(ch);
                        }
                        None => return Err(format!("line {start}: unterminated string")),
                    }
                }
                out.push(Token::Quoted(s, start));
            }
            '{' | '}' | ';' => out.push(Token::Punct(c, line)),
            _ => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                out.push(Token::Word(w, line));
            }
        }
    }
    Ok(out)
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &mut usize) {
    for ch in chars.by_ref() {
        if ch == '\n' {
            *line += 1;
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYGEN: &str = r#"key "fedlb-key" {
	algorithm hmac-sha256;
	secret "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=";
};
"#;

    #[test]
    fn reads_tsig_keygen_output() {
        let KeyFile::Keys(keys) = parse_key_file(KEYGEN).unwrap() else {
            panic!("expected keys")
        };
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "fedlb-key");
        assert_eq!(keys[0].algorithm, "hmac-sha256");
        assert_eq!(keys[0].secret, b"foobarbazquxfoobarbazquxfoobarba");
    }

    #[test]
    fn reads_several_keys_and_comments() {
        let text = format!(
            "# made by hand\n{KEYGEN}\n/* second */ key other {{ secret \"AAAA\"; algorithm hmac-sha512; }};"
        );
        let KeyFile::Keys(keys) = parse_key_file(&text).unwrap() else {
            panic!("expected keys")
        };
        assert_eq!(keys[1].name, "other");
        assert_eq!(keys[1].algorithm, "hmac-sha512");
        assert_eq!(keys[1].secret, vec![0, 0, 0]);
    }

    #[test]
    fn reads_a_bare_secret() {
        assert_eq!(
            parse_key_file("  AAAA\n").unwrap(),
            KeyFile::Bare(vec![0, 0, 0])
        );
        assert_eq!(parse_key_file("AAA").unwrap(), KeyFile::Bare(vec![0, 0]));
    }

    #[test]
    fn rejects_broken_files() {
        assert!(parse_key_file("").unwrap_err().contains("empty"));
        assert!(parse_key_file("not base64!").is_err());
        assert!(
            parse_key_file("key \"k\" { algorithm hmac-sha256; };")
                .unwrap_err()
                .contains("no `secret`")
        );
        assert!(
            parse_key_file("key \"k\" { algorithm hmac-sha256; secret \"AAAA\";")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(
            parse_key_file("key \"k\" { secret \"!!\"; };")
                .unwrap_err()
                .contains("base64")
        );
    }

    #[test]
    fn algorithms() {
        assert_eq!(
            TsigAlgorithm::parse("HMAC-SHA512."),
            Ok(TsigAlgorithm::HmacSha512)
        );
        assert!(
            TsigAlgorithm::parse("hmac-md5")
                .unwrap_err()
                .contains("unsupported")
        );
    }

    // The tests of fedlb-dns's former one-key parser, against the one parser left.
    const DNS_KEYGEN: &str = "key \"ddns-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"yEJLwxMvZN+2Sokg00jb+a2uBusiYoLtflt2Nf6gHzQ=\";\n};\n";

    #[test]
    fn parses_tsig_keygen_output() {
        let KeyFile::Keys(keys) = parse_key_file(DNS_KEYGEN).unwrap() else {
            panic!("expected keys")
        };
        let k = &keys[0];
        let key = TsigKey::new(
            k.name.clone(),
            TsigAlgorithm::parse(&k.algorithm).unwrap(),
            k.secret.clone(),
        )
        .unwrap();
        assert_eq!(key.config_name(), "ddns-key");
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
        let KeyFile::Keys(keys) = parse_key_file(text).unwrap() else {
            panic!("expected keys")
        };
        assert_eq!(
            TsigAlgorithm::parse(&keys[0].algorithm),
            Ok(TsigAlgorithm::HmacSha512)
        );
        assert_eq!(keys[0].secret, [0, 0, 0]);
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        let cases = [
            ("", "file is empty"),
            ("key k { algorithm hmac-sha256; };", "has no `secret`"),
            (
                "key k { algorithm hmac-sha256; secret \"!!\"; };",
                "not valid base64",
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\"",
                "expected `;`",
            ),
        ];
        for (text, want) in cases {
            let got = parse_key_file(text).unwrap_err();
            assert!(got.contains(want), "{text:?}: {got}");
        }
        // the algorithm is checked when the key is applied
        let KeyFile::Keys(keys) =
            parse_key_file("key k { algorithm hmac-md5; secret \"AAAA\"; };").unwrap()
        else {
            panic!("expected keys")
        };
        assert!(
            TsigAlgorithm::parse(&keys[0].algorithm)
                .unwrap_err()
                .contains("unsupported tsig algorithm \"hmac-md5\"")
        );
    }

    #[test]
    fn a_key_needs_a_name_and_a_secret() {
        let e = TsigKey::new("k.", TsigAlgorithm::HmacSha256, vec![]).unwrap_err();
        assert_eq!(e.to_string(), "tsig key \"k.\": empty secret");
        let e = TsigKey::new(".", TsigAlgorithm::HmacSha256, vec![1]).unwrap_err();
        assert_eq!(e.to_string(), "tsig key \".\": empty name");
        let k = TsigKey::new("Fedlb-Key.", TsigAlgorithm::HmacSha384, vec![1; 48]).unwrap();
        assert_eq!(k.config_name(), "fedlb-key");
    }

    #[test]
    fn debug_hides_the_secret() {
        let k = TsigKey {
            name: "k".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: b"topsecret".to_vec(),
        };
        assert!(!format!("{k:?}").contains("topsecret"));
    }
}
