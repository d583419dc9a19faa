//! TCP connect: up if the handshake completes; measures connect time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::ProbeError;

pub(crate) async fn connect_time(target: &str, addr: SocketAddr) -> Result<Duration, ProbeError> {
    let start = Instant::now();
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ProbeError::from_io(target, e))?;
    let rtt = start.elapsed();
    // Close with a reset: a probe every second must not leave TIME_WAIT sockets behind,
    // and the server sees the same thing as from a load balancer's health check.
    let _ = stream.set_zero_linger();
    drop(stream);
    Ok(rtt)
}
