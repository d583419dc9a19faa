//! `fedlb global|farm|agent|backend`: one role per process, stopped by SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use fedlb_node::NodeOptions;
use tokio_util::sync::CancellationToken;

use crate::NodeArgs;

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

fn options(args: &NodeArgs, node: String) -> NodeOptions {
    NodeOptions {
        topology: args.topology.clone(),
        node,
        certs: args.certs.clone(),
        state_dir: args.state_dir.clone(),
    }
}

fn required_node(args: &NodeArgs, role: &str) -> anyhow::Result<String> {
    args.node
        .clone()
        .with_context(|| format!("--node NAME is required for {role}"))
}

/// Runs a global node until a signal stops it.
pub fn global(args: NodeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let shutdown = stop_on_signals();
        // the global node's name may come from the topology: load it once, here
        let topology = fedlb_node::common::load_topology(&args.topology, true)?;
        let node = args
            .node
            .clone()
            .unwrap_or_else(|| topology.global.name.clone());
        Ok(fedlb_node::global::run_with(topology, options(&args, node), shutdown).await?)
    })
}

/// Runs a farm node until a signal stops it.
pub fn farm(args: NodeArgs) -> anyhow::Result<()> {
    let node = required_node(&args, "a farm node")?;
    runtime()?.block_on(async move {
        let shutdown = stop_on_signals();
        Ok(fedlb_node::farm::run(options(&args, node), shutdown).await?)
    })
}

/// Runs an agent until a signal stops it. The one role `fedlb-agent` links: nothing here
/// reaches the farm node, the global node or DNS.
pub fn agent(args: NodeArgs) -> anyhow::Result<()> {
    let node = required_node(&args, "an agent")?;
    agent_runtime()?.block_on(async move {
        let shutdown = stop_on_signals();
        Ok(fedlb_node::agent::run(options(&args, node), shutdown).await?)
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
