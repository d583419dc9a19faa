//! `fedlb global|farm|agent|backend`: one role per process, stopped by SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use fedlb_node::NodeOptions;
use tokio_util::sync::CancellationToken;

use crate::NodeArgs;

/// Which role to run.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    Global,
    Farm,
    Agent,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// An agent waits on a few probes and one connection: one thread does it, without the
/// wake-ups between worker threads that cost a multi-threaded runtime most of its CPU here.
fn agent_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A token cancelled by SIGINT or SIGTERM.
pub fn stop_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stopping");
        t.cancel();
    });
    token
}

/// Runs one node role until a signal stops it.
pub fn run(role: Role, args: NodeArgs) -> anyhow::Result<()> {
    let rt = match role {
        Role::Agent => agent_runtime()?,
        Role::Global | Role::Farm => runtime()?,
    };
    rt.block_on(async move {
        let shutdown = stop_on_signals();
        let opts = |node| NodeOptions {
            topology: args.topology.clone(),
            node,
            certs: args.certs.clone(),
            state_dir: args.state_dir.clone(),
        };
        match (role, args.node.clone()) {
            // the global node's name may come from the topology: load it once, here
            (Role::Global, node) => {
                let topology = fedlb_node::common::load_topology(&args.topology, true)?;
                let node = node.unwrap_or_else(|| topology.global.name.clone());
                fedlb_node::global::run_with(topology, opts(node), shutdown).await?
            }
            (Role::Farm, Some(node)) => fedlb_node::farm::run(opts(node), shutdown).await?,
            (Role::Agent, Some(node)) => fedlb_node::agent::run(opts(node), shutdown).await?,
            (_, None) => anyhow::bail!("--node NAME is required for a farm node or an agent"),
        }
        Ok(())
    })
}

/// Runs a demo backend until a signal stops it.
pub fn backend(listen: SocketAddr, name: String, latency: Duration) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let shutdown = stop_on_signals();
        let behaviour = fedlb_node::backend::Behaviour::new(name.clone(), latency);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let b = behaviour.clone();
            let mut usr1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
            let mut usr2 = signal(SignalKind::user_defined2()).context("SIGUSR2 handler")?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = usr1.recv() => { b.set_failing(true); tracing::warn!("failing (SIGUSR1)"); }
                        _ = usr2.recv() => { b.set_failing(false); tracing::info!("recovered (SIGUSR2)"); }
                    }
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(%listen, %name, "demo backend running");
        fedlb_node::backend::serve(listener, behaviour, shutdown.cancelled_owned()).await?;
        Ok(())
    })
}
