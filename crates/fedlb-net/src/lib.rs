//! fedlb transport: QUIC (quinn) with mutual TLS (rustls, ring) between the nodes of one
//! federation. It owns the federation's private CA and certificate issuing, the TLS and
//! QUIC configuration, identities read from certificates (`<node>.<role>.fedlb.invalid`),
//! the hello with its protocol-version check, length-framed messages on long-lived streams
//! (routine and urgent) with a bounded bincode decode, reconnection with backoff, and shutdown. It is generic over the message
//! type and knows nothing of topologies, reports or policies: who may connect and what a
//! peer may say are decided by the application's [`Authoriser`]. It must never trust a
//! name the peer sends over one taken from its certificate, never decode without the size
//! limit, and never let one peer's error reach another peer or the node.
//!
//! Plugging in: a server calls [`Server::start`] with a socket, its [`NodeTls`], a
//! [`ServerConfig`] and an [`Authoriser<M>`], then reads [`ServerEvent<M>`]s; a client makes
//! a [`ClientEndpoint`] and one [`Client<M>`] per upstream server, and calls
//! [`Client::send`] (or [`Client::send_urgent`] for what must not wait). `M` is any `Serialize + DeserializeOwned` type, encoded with
//! [`wire::encode`] / [`wire::decode`]: fedlb-proto's one codec (`fedlb_proto::codec`), the
//! one its fuzz target exercises.

mod admission;
mod client;
mod close;
mod error;
mod identity;
pub mod pki;
mod server;
mod socket;
mod tls;
mod verify;
pub mod wire;

pub use admission::AdmissionLimits;
pub use client::{
    Backlog, Backoff, Client, ClientConfig, ClientEndpoint, ConnState, MAX_REQUEST, Queued,
    ServerRequest,
};
pub use close::CloseCode;
pub use error::NetError;
pub use identity::{IDENTITY_SUFFIX, NodeName, PeerIdentity, Role};
pub use pki::{Ca, NodeCert};
pub use server::{
    Authoriser, ConnId, Events, FnAuthoriser, Requester, Server, ServerConfig, ServerEvent,
};
pub use socket::{SOCKET_BUFFER_BYTES, bind_udp};
pub use tls::{ALPN, NodeTls, TransportSettings};
