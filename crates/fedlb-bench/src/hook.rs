//! A command run around each measurement window, for profiling a node under a benchmark's
//! load: `FEDLB_BENCH_HOOK=CMD` runs `CMD start PID` when a window opens and `CMD stop PID`
//! when it closes (e.g. a script calling `callgrind_control -z PID` / `-d PID` on a node
//! started under valgrind through `FEDLB_BIN`). Unset, it does nothing.

/// Runs the hook, if one is set, and waits for it.
pub fn window(phase: &str, pid: u32) {
    let Some(cmd) = std::env::var_os("FEDLB_BENCH_HOOK") else {
        return;
    };
    match std::process::Command::new(&cmd)
        .arg(phase)
        .arg(pid.to_string())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("hook {} {phase} {pid}: {s}", cmd.to_string_lossy()),
        Err(e) => eprintln!("hook {} {phase} {pid}: {e}", cmd.to_string_lossy()),
    }
}
