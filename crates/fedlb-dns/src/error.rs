//! The crate's one error type and the failure classes that metrics count.

use std::{io, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Serialize;

/// Everything that can go wrong in fedlb-dns.
///
/// Texts are lowercase, name the object (server, zone, key, file, command) and the value, and
/// where an operator can fix something they say what.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server rejected the TSIG signature of an update (NOTAUTH with a TSIG error).
    #[error("dns server {server}: tsig key \"{key}\" rejected ({code}): {hint}")]
    Tsig {
        /// The server that answered.
        server: SocketAddr,
        /// The key name fedlb signed with.
        key: String,
        /// BADSIG, BADKEY, BADTIME or another TSIG error.
        code: String,
        /// What to check.
        hint: String,
    },
    /// The server refused the update (REFUSED).
    #[error("dns server {server}: update for zone \"{zone}\" refused (REFUSED): {hint}")]
    Refused {
        /// The server that answered.
        server: SocketAddr,
        /// The zone of the update.
        zone: String,
        /// Whether the refusal carried a valid TSIG signature (a policy decision) or not
        /// (PowerDNS answers every TSIG failure like this).
        signed: bool,
        /// What to check.
        hint: String,
    },
    /// The server does not serve the zone as a primary (NOTAUTH without a TSIG error, or a
    /// query for the zone's SOA that is not answered authoritatively).
    #[error(
        "dns server {server}: not authoritative for zone \"{zone}\" ({rcode}); check that it serves the zone as a primary"
    )]
    NotAuthoritative {
        /// The server that answered.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// The response code seen.
        rcode: String,
    },
    /// A record of the update lies outside the zone of the update (NOTZONE).
    #[error(
        "dns server {server}: update for zone \"{zone}\" names a record outside the zone (NOTZONE)"
    )]
    NotZone {
        /// The server that answered.
        server: SocketAddr,
        /// The zone.
        zone: String,
    },
    /// A prerequisite failed: someone else changed the records since fedlb last read them.
    #[error(
        "dns server {server}: update for zone \"{zone}\" not applied, prerequisite failed ({rcode}): records were changed by someone else"
    )]
    Conflict {
        /// The server that answered.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// NXRRSET, YXRRSET, NXDOMAIN or YXDOMAIN.
        rcode: String,
    },
    /// Any other error response code (SERVFAIL, FORMERR, NOTIMP, ...).
    #[error("dns server {server}: {what} for zone \"{zone}\" failed ({rcode})")]
    Server {
        /// The server that answered.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// "update" or "query".
        what: &'static str,
        /// The response code seen.
        rcode: String,
    },
    /// No complete answer in time.
    #[error("dns server {server}: no answer within {timeout:?} while {during}")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// The timeout that expired.
        timeout: Duration,
        /// What fedlb was doing.
        during: &'static str,
    },
    /// The server could not be reached or closed the connection.
    #[error("dns server {server}: unreachable while {during}: {source}")]
    Unreachable {
        /// The server.
        server: SocketAddr,
        /// What fedlb was doing.
        during: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The response could not be trusted or understood.
    #[error("dns server {server}: bad response: {reason}")]
    BadResponse {
        /// The server.
        server: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// Fail-static: a name with no address at all is never written.
    #[error(
        "name \"{name}\": empty answer refused (fail-static: the last good answer stays published)"
    )]
    EmptyAnswer {
        /// The name.
        name: String,
    },
    /// A name outside the publisher's zone is never written.
    #[error("name \"{name}\" is outside zone \"{zone}\"; refused")]
    OutOfZone {
        /// The name.
        name: String,
        /// The publisher's zone.
        zone: String,
    },
    /// Answers for another zone were handed to a publisher.
    #[error("answers for zone \"{got}\" given to the publisher of zone \"{want}\"; refused")]
    WrongZone {
        /// The publisher's zone.
        want: String,
        /// The zone of the answers.
        got: String,
    },
    /// A domain name could not be parsed.
    #[error("name \"{name}\": {reason}")]
    Name {
        /// The text given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A TSIG key is unusable (its name is not a domain name, its secret is empty, hickory
    /// refuses it).
    #[error("tsig key \"{key}\": {reason}")]
    TsigKey {
        /// The key name as given.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Updates to DNS servers were asked for without a TSIG key to sign them.
    #[error("zone \"{zone}\": updates to {} need a tsig key", list(servers))]
    NoTsigKey {
        /// The zone.
        zone: String,
        /// The servers that would be updated.
        servers: Vec<SocketAddr>,
    },
    /// A zone name is not a domain name.
    #[error("zone \"{zone}\": {reason}")]
    Zone {
        /// The zone as given.
        zone: String,
        /// What is wrong.
        reason: String,
    },
    /// An RFC 2136 publisher was configured without a primary server.
    #[error("rfc 2136 publisher for zone \"{zone}\": no primary server configured")]
    NoPrimary {
        /// The zone.
        zone: String,
    },
    /// A file could not be read or written.
    #[error("file {}: {action}: {source}", path.display())]
    File {
        /// The path.
        path: PathBuf,
        /// What fedlb was doing.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The command publisher's command could not be run, failed or timed out.
    #[error("command \"{command}\": {what}")]
    Command {
        /// The program.
        command: String,
        /// What happened (exit status and the end of stderr, or the timeout).
        what: String,
        /// Whether it was a timeout.
        timed_out: bool,
    },
    /// The embedded DNS server could not start or stopped with an error.
    #[error("embedded dns server for zone \"{zone}\": {reason}")]
    Embedded {
        /// The zone.
        zone: String,
        /// What is wrong.
        reason: String,
    },
}

/// Coarse class of a failure, for metrics and for callers that react by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureClass {
    /// TSIG rejected: BADSIG, BADKEY, BADTIME.
    Tsig,
    /// REFUSED (policy; PowerDNS also for TSIG failures).
    Refused,
    /// The server is not authoritative for the zone.
    NotAuthoritative,
    /// NOTZONE.
    NotZone,
    /// Prerequisite failed (compare-and-swap conflict).
    Conflict,
    /// SERVFAIL and other error codes.
    ServerError,
    /// No answer in time.
    Timeout,
    /// Connection refused or reset.
    Unreachable,
    /// A response that could not be trusted or parsed.
    BadResponse,
    /// Fail-static refusal of an empty answer.
    EmptyAnswer,
    /// A name outside the zone, or answers for another zone.
    OutOfZone,
    /// Local configuration.
    Config,
    /// Local file I/O.
    Io,
    /// The command publisher's command failed.
    Command,
    /// The command publisher's command timed out.
    CommandTimeout,
}

impl Error {
    /// The class of this failure.
    pub fn class(&self) -> FailureClass {
        match self {
            Error::Tsig { .. } => FailureClass::Tsig,
            Error::Refused { .. } => FailureClass::Refused,
            Error::NotAuthoritative { .. } => FailureClass::NotAuthoritative,
            Error::NotZone { .. } => FailureClass::NotZone,
            Error::Conflict { .. } => FailureClass::Conflict,
            Error::Server { .. } => FailureClass::ServerError,
            Error::Timeout { .. } => FailureClass::Timeout,
            Error::Unreachable { .. } => FailureClass::Unreachable,
            Error::BadResponse { .. } => FailureClass::BadResponse,
            Error::EmptyAnswer { .. } => FailureClass::EmptyAnswer,
            Error::OutOfZone { .. } | Error::WrongZone { .. } => FailureClass::OutOfZone,
            Error::Name { .. }
            | Error::TsigKey { .. }
            | Error::NoTsigKey { .. }
            | Error::Zone { .. }
            | Error::NoPrimary { .. }
            | Error::Embedded { .. } => FailureClass::Config,
            Error::File { .. } => FailureClass::Io,
            Error::Command {
                timed_out: true, ..
            } => FailureClass::CommandTimeout,
            Error::Command { .. } => FailureClass::Command,
        }
    }
}

impl From<fedlb_topology::TsigKeyError> for Error {
    fn from(e: fedlb_topology::TsigKeyError) -> Self {
        Error::TsigKey {
            key: e.name,
            reason: e.reason,
        }
    }
}

fn list(servers: &[SocketAddr]) -> String {
    match servers {
        [] => "no server".to_owned(),
        _ => servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}
