//! Each probe kind against a real target: loopback servers, the kernel's ICMP, network
//! namespaces joined by routers, real child processes.

mod support;

mod command;
mod crash;
mod hops;
mod http;
mod icmp;
mod load;
mod monitor;
mod tcp;
