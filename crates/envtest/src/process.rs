//! One server process in its own process group, with a watchdog that kills the group when the
//! test process goes away without stopping it.

use crate::{Error, io};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Reads its stdin (a pipe whose other end only the test process holds) until end of file, which
/// comes when the test process exits however it exits, even by SIGKILL; then stops the group
/// (SIGTERM, SIGKILL after 5 s) and, when given one, removes the server's directory (a `static`
/// shared server is never dropped). In its own process group, so a Ctrl-C to the test's group does
/// not take it away first.
const WATCHDOG: &str = r#"read -r _ || :
kill -s TERM -- "-$1" 2>/dev/null || exit 0
i=0
while kill -s 0 -- "-$1" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -s KILL -- "-$1" 2>/dev/null
case "$2" in */envtest-*) rm -rf -- "$2" ;; esac
exit 0"#;

pub(crate) struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
    watchdog: Child,
    /// Held open for the watchdog; closing it (our exit) is its signal.
    _watchdog_stdin: ChildStdin,
}

impl Server {
    pub(crate) fn spawn(
        name: &'static str,
        binary: &Path,
        args: &[String],
        log: &Path,
        remove_on_orphan: Option<&Path>,
    ) -> Result<Server, Error> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("open {}", log.display())))?;
        let err = out.try_clone().map_err(io("clone log file"))?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(io(format!("start {}", binary.display())))?;
        let pgid = child.id();
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("envtest-watchdog")
            .arg(pgid.to_string())
            .arg(remove_on_orphan.map(Path::as_os_str).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        let mut watchdog = match watchdog {
            Ok(w) => w,
            Err(e) => {
                signal_group(pgid, libc::SIGKILL);
                let mut child = child;
                let _ = child.wait();
                return Err(io("start the watchdog (sh)")(e));
            }
        };
        let stdin = watchdog.stdin.take().expect("piped stdin");
        Ok(Server {
            name,
            child,
            log: log.to_path_buf(),
            watchdog,
            _watchdog_stdin: stdin,
        })
    }

    /// The server process's id (for its memory and CPU in `/proc`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error with the end of the log when the process has ended by itself.
    pub(crate) fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                process: self.name,
                status: status.to_string(),
                log: self.log.display().to_string(),
                tail: tail(&self.log, 30),
            }),
            Err(e) => Err(io(format!("wait for {}", self.name))(e)),
        }
    }

    /// SIGTERM to the process group, SIGKILL after `grace`; reaps the process and the watchdog.
    pub(crate) fn stop(mut self, grace: Duration) {
        let pgid = self.child.id();
        signal_group(pgid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    signal_group(pgid, libc::SIGKILL);
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
