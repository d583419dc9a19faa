//! Mixed versions: a farm node of protocol 5 (which refuses the streams a global node opens
//! to forward an operator's admin call) is refused by a global node of protocol 6 with both
//! versions named, so an admin call is never forwarded to a node that cannot take it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fedlb_net::{
    Client, ClientConfig, ClientEndpoint, ConnState, Role, TransportSettings, bind_udp,
};
use fedlb_node::common::{identity, load_tls};
use fedlb_proto::{Message, PROTOCOL_VERSION};
use support::*;
use tokio_util::sync::CancellationToken;

const B: u8 = 241;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_node_of_protocol_5_is_refused_by_a_global_node_of_protocol_6() {
    assert_eq!(PROTOCOL_VERSION, 6);
    let toml = [
        header(B, r#""least_loaded""#),
        farm(B, 2, "near", 10, &["n1"]),
        remote_server(B, 11, "n1"),
    ]
    .concat();
    let mut w = World::new(&toml);
    w.start_global();
    let global = SocketAddr::new(ip(B, 1), 7400);
    let tls = load_tls(&w.certs, Role::Farm, "near").unwrap();
    let endpoint = ClientEndpoint::new(
        bind_udp("127.0.0.1:0".parse().unwrap()).unwrap(),
        &tls,
        TransportSettings::default(),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let old: Client<Message> = Client::start(
        &endpoint,
        ClientConfig::new(global, identity(Role::Global, "global").unwrap(), 5),
        stop.clone(),
    );
    let mut state = old.state();
    let reason = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let ConnState::Disconnected { reason, .. } = &*state.borrow_and_update() {
                return reason.clone();
            }
            state.changed().await.unwrap();
        }
    })
    .await
    .expect("the old farm node is refused");
    assert_eq!(
        reason,
        "rejected by peer: protocol version mismatch: client speaks 5, server speaks 6"
    );
    stop.cancel();
    w.shutdown().await;
}
