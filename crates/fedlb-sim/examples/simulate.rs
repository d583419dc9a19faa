//! `fedlb simulate` before the binary wires it:
//! `cargo run --release -p fedlb-sim --example simulate -- TOPOLOGY --scenario FILE [--out DIR]`

fn main() {
    if let Err(e) = fedlb_sim::run_cli(std::env::args_os().skip(1), &mut std::io::stdout()) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
