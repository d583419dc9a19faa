use std::net::SocketAddr;
use std::path::PathBuf;

/// Every error this crate returns.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A request to a connected peer failed (not connected, the stream failed, no answer).
    #[error("request to {peer}: {why}")]
    Request { peer: String, why: String },
    /// A node name is not a lowercase DNS label.
    #[error("node name {name:?}: {why}")]
    InvalidNodeName { name: String, why: &'static str },
    /// A role name is not `agent`, `farm` or `global`.
    #[error("role {0:?}: unknown (expected agent, farm or global)")]
    UnknownRole(String),
    /// A federation name is unusable as a CA name.
    #[error("federation name {name:?}: {why}")]
    InvalidFederation { name: String, why: &'static str },
    /// A certificate has no usable fedlb identity.
    #[error("certificate identity: {0}")]
    Identity(String),
    /// Generating, loading or checking a certificate or key failed.
    #[error("certificate {what}: {why}")]
    Certificate { what: String, why: String },
    /// A peer's or this node's certificate is from another CA, expired or not yet valid.
    #[error("certificate of {peer} {why}")]
    CertificateOf { peer: String, why: String },
    /// A private key file that others may write.
    #[error("{}: private key is writable by group or others (mode {mode:04o}); refusing to use it; fix with: chmod 600 {}", path.display(), path.display())]
    KeyPermissions { path: PathBuf, mode: u32 },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file exists and `force` was not given.
    #[error("{}: already exists; refusing to overwrite without force", path.display())]
    Exists { path: PathBuf },
    /// A socket could not be created, bound or configured.
    #[error("socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS configuration was rejected by rustls or quinn.
    #[error("tls config for {identity}: {why}")]
    Tls { identity: String, why: String },
    /// A setting is out of range or inconsistent with another.
    #[error("transport settings: {0}")]
    Settings(String),
    /// A node tried to take a part its role cannot take.
    #[error("node {identity}: role {role} cannot {what}")]
    WrongRole {
        identity: String,
        role: crate::Role,
        what: &'static str,
    },
    /// A message could not be encoded or decoded (too large, undecodable, trailing bytes):
    /// the wire codec's error.
    #[error(transparent)]
    Codec(#[from] fedlb_proto::codec::CodecError),
    /// The hello that opens every connection is malformed.
    #[error("hello: {0}")]
    Hello(String),
    /// The client task has stopped; nothing more can be sent.
    #[error("client for {server}: stopped")]
    ClientStopped { server: String },
}
