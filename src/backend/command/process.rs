//! The agent process: starting it, feeding its input, reading its output, and stopping it with
//! everything it started.

use super::super::Progress;
use super::protocol::{parse_line, Transcript};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longer stdout lines are cut here, so a runaway agent cannot make Chime buffer without bound.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// How much of stderr is kept for the error message.
pub(super) const STDERR_TAIL_BYTES: usize = 4 * 1024;
/// Between SIGTERM and SIGKILL when the agent is stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the agent exits, how long to wait for the rest of its stdout.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How the agent process ended.
pub(super) enum End {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

/// Every process of one agent run, addressed by the process Chime started (the leader of its own
/// process group).
///
/// Without a sandbox that group is the agent and everything it started. With bubblewrap, the
/// leader is bwrap itself: it forks the sandbox's init (pid 1 of the new pid namespace, in a
/// session and process group of its own because of `--new-session`), which runs the agent. A
/// SIGTERM to bwrap would kill bwrap and, through `--die-with-parent`, SIGKILL the whole sandbox
/// at once, so a stop sends SIGTERM to the init's group instead (the agent and its children; the
/// init ignores it) and keeps SIGKILL for the end. Anything in the sandbox dies with its init,
/// even a daemon that left the group: that is what the pid namespace guarantees.
#[derive(Clone, Copy)]
pub(super) struct AgentGroup {
    pub leader: i32,
    pub sandboxed: bool,
}

impl AgentGroup {
    fn terminate(self) {
        match self.sandbox_inits().as_slice() {
            // bwrap has not forked yet: nothing ran, so nothing needs a graceful end.
            [] => killpg(self.leader, libc::SIGKILL),
            inits => inits.iter().for_each(|&pid| killpg(pid, libc::SIGTERM)),
        }
    }

    pub(super) fn kill(self) {
        for pid in self.sandbox_inits() {
            killpg(pid, libc::SIGKILL);
        }
        killpg(self.leader, libc::SIGKILL);
    }

    /// The children of bwrap: the sandbox's init (none without a sandbox).
    fn sandbox_inits(self) -> Vec<i32> {
        if self.sandboxed {
            children_of(self.leader)
        } else {
            vec![]
        }
    }
}

fn killpg(group: i32, signal: i32) {
    // killpg(0) or killpg(1) would hit Chime's own group or every process: never.
    if group > 1 {
        // SAFETY: killpg has no memory-safety preconditions; a group that is already gone
        // only yields ESRCH, which is fine to ignore.
        unsafe {
            libc::killpg(group, signal);
        }
    }
}

/// The pids whose parent is `parent`, from /proc (which every Linux has, unlike the optional
/// `/proc/<pid>/task/<pid>/children`).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Kills the agent's group if `run` is dropped halfway (the caller gave up on the turn).
pub(super) struct KillOnDrop(pub Option<AgentGroup>);

impl KillOnDrop {
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            group.kill();
        }
    }
}

/// Writes the prompt and closes stdin, in the background: an agent that reads its input late (or
/// never) must not block Chime on a full pipe.
pub(super) fn feed_stdin(child: &mut Child, prompt: String) {
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            // An agent that exits without reading everything is not an error here.
            if let Err(e) = stdin.write_all(prompt.as_bytes()).await {
                tracing::debug!("agent stopped reading its input: {e}");
            }
            drop(stdin);
        });
    }
}

/// Waits for the agent to exit, the deadline, or a stop, while `io` reads its output.
pub(super) async fn supervise(
    child: &mut Child,
    group: AgentGroup,
    io: impl std::future::Future<Output = ()>,
    deadline: Instant,
    cancel: &CancellationToken,
) -> End {
    tokio::pin!(io);
    let mut io_done = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = &mut io, if !io_done => io_done = true,
            () = tokio::time::sleep_until(deadline) => {
                terminate(child, group).await;
                return End::TimedOut;
            }
            () = cancel.cancelled() => {
                terminate(child, group).await;
                return End::Cancelled;
            }
        }
    };
    // The agent is done; whatever it left running in its group (a dev server, a stuck child) is
    // killed, which also closes the pipes those processes hold so the reads below can end.
    group.kill();
    if !io_done && tokio::time::timeout(DRAIN_GRACE, &mut io).await.is_err() {
        tracing::warn!("the agent's output did not end after it exited; ignoring the rest");
    }
    End::Exited(status)
}

/// SIGTERM to the agent's group; SIGKILL to whatever is left once the agent has exited, or after
/// the grace period if it has not.
///
/// The grace period follows the agent itself, not every member of its group: orphaned
/// grandchildren stay zombies (still counted in the group) until init reaps them, which some
/// container inits do only every few seconds, and a Chime running as PID 1 never does.
async fn terminate(child: &mut Child, group: AgentGroup) {
    group.terminate();
    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    group.kill();
    if let Err(e) = child.wait().await {
        tracing::warn!("cannot reap the stopped agent: {e}");
    }
}

pub(super) fn exit_message(status: ExitStatus, stderr_tail: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr_tail);
    let stderr = match stderr.trim() {
        "" => "(nothing on stderr)",
        s => s,
    };
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("agent exited with status {code}: {stderr}"),
        (None, Some(signal)) => format!("agent was killed by signal {signal}: {stderr}"),
        (None, None) => format!("agent failed ({status}): {stderr}"),
    }
}

/// Keeps the last `limit` bytes of `reader` in `tail`.
pub(super) async fn read_tail<R: AsyncRead + Unpin>(
    reader: Option<R>,
    tail: &mut Vec<u8>,
    limit: usize,
) {
    let Some(mut reader) = reader else { return };
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                // Trim in batches rather than on every read.
                if tail.len() > 2 * limit {
                    tail.drain(..tail.len() - limit);
                }
            }
            Err(e) => {
                tracing::debug!("cannot read the agent's stderr: {e}");
                break;
            }
        }
    }
    if tail.len() > limit {
        tail.drain(..tail.len() - limit);
    }
}

/// Reads the agent's stdout line by line into `transcript`, forwarding progress.
pub(super) async fn read_stdout<R: AsyncRead + Unpin>(
    reader: Option<R>,
    transcript: &mut Transcript,
    progress: &mpsc::Sender<Progress>,
) {
    let Some(reader) = reader else { return };
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        match read_capped_line(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(true) => {
                let text = String::from_utf8_lossy(&line);
                transcript.apply(parse_line(&text), progress);
            }
            Ok(false) => break,
            Err(e) => {
                tracing::debug!("cannot read the agent's stdout: {e}");
                break;
            }
        }
    }
}

/// Reads one line into `buf` (without its newline), keeping at most `cap` bytes of it and
/// skipping the rest. Returns `false` at the end of the input.
async fn read_capped_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<bool> {
    buf.clear();
    let mut read_any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(read_any);
        }
        read_any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let content = &chunk[..newline.unwrap_or(chunk.len())];
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&content[..content.len().min(room)]);
        let consumed = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capped_lines() {
        let data = format!("short\n{}\nlast", "y".repeat(100));
        let mut reader = BufReader::with_capacity(16, data.as_bytes());
        let mut buf = Vec::new();
        assert!(read_capped_line(&mut reader, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"short");
        assert!(read_capped_line(&mut reader, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"yyyyyyyyyy");
        assert!(read_capped_line(&mut reader, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"last");
        assert!(!read_capped_line(&mut reader, &mut buf, 10).await.unwrap());
    }
}
