//! Event-driven crash detection for intrusive agents: notice at once when a service's
//! listening socket disappears, so the monitor re-probes without waiting for the interval.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::procnet::{is_listening, is_listening_at};

/// A change of a port's listening state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenEvent {
    /// A socket now listens on the port (also sent when one is first seen).
    Listening {
        /// The port.
        port: u16,
    },
    /// The last listening socket on the port is gone: the service likely crashed; the
    /// shell should call the monitor's `handle_trigger`.
    Vanished {
        /// The port.
        port: u16,
    },
}

/// Polls the kernel's socket tables for a listener on one port (see
/// [`crate::is_listening`] for why that is cheap) and reports changes. Dropping it stops
/// the polling.
pub struct ListenWatcher {
    port: u16,
    events: mpsc::Receiver<ListenEvent>,
    task: JoinHandle<()>,
}

impl ListenWatcher {
    /// Starts watching `port`, looking every `every` (50 ms detects a crash well within
    /// one probe interval). Must be called within a tokio runtime.
    pub fn spawn(port: u16, every: Duration) -> Self {
        Self::spawn_with(port, every, move || is_listening(port))
    }

    /// Starts watching the port of `addr`, looking every `every`: the same events as
    /// [`ListenWatcher::spawn`] (a listener on the port at any address counts), but each
    /// look first asks the kernel for the listener that would take a connection to `addr`
    /// — a hash look-up — and walks the listening tables only when it finds none (see
    /// [`crate::is_listening_at`]). Give the address the service is probed at.
    pub fn spawn_at(addr: SocketAddr, every: Duration) -> Self {
        Self::spawn_with(addr.port(), every, move || is_listening_at(addr))
    }

    fn spawn_with(
        port: u16,
        every: Duration,
        is_listening: impl Fn() -> std::io::Result<bool> + Send + 'static,
    ) -> Self {
        let (tx, events) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut was = None;
            loop {
                tick.tick().await;
                // Read here rather than on a blocking thread: the head of the tables is a
                // few small reads of kernel memory, and handing each look to another
                // thread (20 a second) cost an idle agent more than the look itself.
                let now = match is_listening() {
                    Ok(now) => now,
                    Err(e) => {
                        tracing::warn!(port, error = %e, "cannot read the socket tables; listen watcher stops");
                        return;
                    }
                };
                let event = match (was, now) {
                    (Some(true), false) => Some(ListenEvent::Vanished { port }),
                    (Some(false) | None, true) => Some(ListenEvent::Listening { port }),
                    _ => None,
                };
                was = Some(now);
                if let Some(event) = event {
                    tracing::debug!(port, ?event, "listening state changed");
                    // Never blocks: when the queue is full the receiver is already
                    // behind on events that each mean "probe now", so this one drops.
                    if let Err(TrySendError::Closed(_)) = tx.try_send(event) {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        ListenWatcher { port, events, task }
    }

    /// The port watched.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next change; `None` once the watcher has stopped (its tables unreadable).
    /// Cancel-safe: use it in `select!`.
    pub async fn changed(&mut self) -> Option<ListenEvent> {
        self.events.recv().await
    }
}

impl Drop for ListenWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
