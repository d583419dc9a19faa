//! An application metric from a command that prints one number (connected DBMS users,
//! queue depth). The command runs in its own process group, which is killed whenever the
//! run ends (timeout, cancellation, or after it exits), so nothing it started outlives it.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::ProbeError;

/// More output than this is not "one number"; the rest is not read.
const OUTPUT_LIMIT: u64 = 4096;

pub(crate) async fn run(target: &str, argv: &[String]) -> Result<f64, ProbeError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ProbeError::Invalid {
            target: target.to_owned(),
            reason: "empty command".to_owned(),
        });
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ProbeError::Invalid {
                target: target.to_owned(),
                reason: format!("program {program:?} not found"),
            },
            _ => ProbeError::from_io(target, e),
        })?;
    let _group = child.id().map(GroupKiller);
    let stdout = read_capped(child.stdout.take());
    let stderr = read_capped(child.stderr.take());
    let (status, stdout, stderr) = tokio::join!(child.wait(), stdout, stderr);
    let status = status.map_err(|e| ProbeError::from_io(target, e))?;
    if !status.success() {
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => status.to_string(),
        };
        let stderr = String::from_utf8_lossy(&stderr);
        let first = stderr.lines().map(str::trim).find(|l| !l.is_empty());
        return Err(ProbeError::Exit {
            target: target.to_owned(),
            reason: match first {
                Some(line) => format!("{how}: {}", quote(line)),
                None => how,
            },
        });
    }
    let out = String::from_utf8_lossy(&stdout);
    match out.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ProbeError::BadResponse {
            target: target.to_owned(),
            reason: format!("output {} is not a number", quote(out.trim())),
        }),
    }
}

async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        // A read error leaves what was read; the exit status tells the rest.
        let _ = pipe.take(OUTPUT_LIMIT).read_to_end(&mut buf).await;
    }
    buf
}

fn quote(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// Kills the command's process group when the run ends, however it ends.
struct GroupKiller(u32);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0) {
            // ESRCH (the group is already gone) is the usual case.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}
