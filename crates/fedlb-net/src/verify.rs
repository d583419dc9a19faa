//! Certificate checks that say what is wrong in words: "certificate of agent/web-1 is
//! signed by a different CA than /etc/fedlb/ca.pem", "… expired on 2026-01-31 12:00:00
//! UTC", instead of webpki's `BadSignature` or a raw Unix time. The checks themselves are
//! rustls' and webpki's; these wrappers only reword their refusals.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};

use crate::PeerIdentity;

/// Who a certificate belongs to, for messages: its fedlb identity, else its subject's
/// common name.
pub(crate) fn owner(der: &[u8]) -> String {
    if let Ok(id) = PeerIdentity::from_certificate(der) {
        return id.to_string();
    }
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, c)| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(|cn| format!("{cn:?}"))
        })
        .unwrap_or_else(|| "the peer".to_owned())
}

/// A certificate's validity period, as read from it.
pub(crate) fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let at = |t: i64| {
        u64::try_from(t)
            .ok()
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    };
    Some((
        at(c.validity().not_before.timestamp())?,
        at(c.validity().not_after.timestamp())?,
    ))
}

/// `2026-01-31 12:00:00 UTC`.
pub(crate) fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX)) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => format!("{secs} s after 1970"),
    }
}

/// What is wrong with a certificate, after the part "certificate of <owner> ", if it is a
/// problem an operator fixes by hand (wrong CA, expired, not yet valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    OtherCa,
    Expired,
    NotYetValid,
}

impl Problem {
    pub(crate) fn describe(self, der: &[u8], ca: &str) -> String {
        let period = validity(der);
        match (self, period) {
            (Problem::OtherCa, _) => format!("is signed by a different CA than {ca}"),
            (Problem::Expired, Some((_, end))) => format!("expired on {}", utc(end)),
            (Problem::Expired, None) => "has expired".to_owned(),
            (Problem::NotYetValid, Some((start, _))) => {
                format!(
                    "is not valid before {} (check this host's clock)",
                    utc(start)
                )
            }
            (Problem::NotYetValid, None) => "is not valid yet".to_owned(),
        }
    }
}

/// The message as a rustls error. `CertificateError::Other` keeps the "bad certificate"
/// alert to the peer; its text reaches the peer in the QUIC close reason too.
struct Explained(String);

/// Plain text: rustls shows this through `{:?}`.
impl std::fmt::Debug for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Explained {}

/// Rewords a refusal of `end_entity` when it is one of the [`Problem`]s.
fn explain(err: rustls::Error, end_entity: &CertificateDer<'_>, ca: &str) -> rustls::Error {
    let rustls::Error::InvalidCertificate(e) = &err else {
        return err;
    };
    let problem = match e {
        CertificateError::BadSignature | CertificateError::UnknownIssuer => Problem::OtherCa,
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => Problem::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            Problem::NotYetValid
        }
        _ => return err,
    };
    let text = format!(
        "certificate of {} {}",
        owner(end_entity.as_ref()),
        problem.describe(end_entity.as_ref(), ca)
    );
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Explained(
        text,
    )))))
}

/// rustls prints `CertificateError::Other` with `{:?}`; this takes the wrapping off again
/// for an operator.
pub(crate) fn tidy(text: String) -> String {
    const WRAP: &str = "Other(OtherError(";
    match text.find(WRAP) {
        Some(i) if text.ends_with("))") => {
            format!("{}{}", &text[..i], &text[i + WRAP.len()..text.len() - 2])
        }
        _ => text,
    }
}

/// The server's check of client certificates, with readable refusals.
#[derive(Debug)]
pub(crate) struct ExplainClientCerts {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) ca: Arc<str>,
}

impl ClientCertVerifier for ExplainClientCerts {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| explain(e, end_entity, &self.ca))
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client's check of the server certificate, with readable refusals.
#[derive(Debug)]
pub(crate) struct ExplainServerCert {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) ca: Arc<str>,
}

impl ServerCertVerifier for ExplainServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| explain(e, end_entity, &self.ca))
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_utc_and_wrapping_is_taken_off() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(utc(t), "2026-01-01 00:00:00 UTC");
        assert_eq!(
            tidy("a: invalid peer certificate: Other(OtherError(certificate of x expired))".into()),
            "a: invalid peer certificate: certificate of x expired"
        );
        assert_eq!(tidy("plain".into()), "plain");
    }
}
