//! A service binary as a real process in a test. It binds port 0 itself
//! (`HTTP_ADDR=127.0.0.1:0`) and the harness asks the kernel which port that
//! process listens on (`/proc`), so no port is ever picked, dropped and
//! re-bound by the test (which races with other tests), and nothing depends on
//! the process's log settings. Its JSON log goes to a file the test can read;
//! the process is killed when the handle drops.

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::process::{Child, Command};

/// How to start a service process.
pub struct Spawn {
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_level: String,
}

impl Spawn {
    /// `binary` with `env`; logs at `warn` unless [`Spawn::log_level`] says otherwise.
    pub fn new(binary: impl AsRef<Path>, env: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            binary: binary.as_ref().to_owned(),
            args: Vec::new(),
            env: env.into_iter().collect(),
            log_level: "warn".into(),
        }
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// `RUST_LOG` of the process (`E2E_LOGS` overrides it for debugging).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Starts the process and waits (bounded) until it says where it listens.
    /// Does not wait for readiness: see [`ServiceProcess::wait_ready`].
    pub async fn start(self) -> ServiceProcess {
        let (name, log, child) = self.spawn();
        let pid = child.id().expect("a started process has a pid");
        let port = crate::eventually(Duration::from_secs(30), Duration::from_millis(20), || {
            let port = listening_port(pid);
            async move { port }
        })
        .await
        .unwrap_or_else(|| panic!("{name} did not start listening; its log: {}", log.display()));
        ServiceProcess { url: format!("http://127.0.0.1:{port}"), log, child }
    }

    /// Runs the process to its end (bounded), for a run meant to stop on its own
    /// (a failpoint's crash), which may come before it listens; returns how it
    /// ended and where its log is.
    pub async fn run_to_exit(self, within: Duration) -> (ExitStatus, PathBuf) {
        let (name, log, mut child) = self.spawn();
        let status = tokio::time::timeout(within, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit within {within:?}; its log: {}", log.display()))
            .expect("wait for the process");
        (status, log)
    }

    fn spawn(self) -> (String, PathBuf, Child) {
        let name = self.binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let log = std::env::temp_dir().join(format!("orderflow-test-{name}-{}.log", crate::unique_tag()));
        let file = std::fs::File::create(&log).expect("log file");
        let level = std::env::var("E2E_LOGS").unwrap_or(self.log_level);
        let child = Command::new(&self.binary)
            .args(&self.args)
            .envs(self.env)
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", level)
            .stdout(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        (name, log, child)
    }
}

/// The TCP port process `pid` listens on, from `/proc`: the inodes of its
/// socket descriptors matched against the listening sockets in `net/tcp`.
fn listening_port(pid: u32) -> Option<u16> {
    let sockets: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st ... inode: state 0A is LISTEN.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        if *state != "0A" || !sockets.contains(*inode) {
            return None;
        }
        u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
    })
}

/// A running service process, killed when dropped.
pub struct ServiceProcess {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Where its stdout (the JSON log) goes.
    pub log: PathBuf,
    child: Child,
}

impl ServiceProcess {
    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn wait_ready(&self, within: Duration) {
        let (http, url) = (reqwest::Client::new(), format!("{}/readyz", self.url));
        let ready = crate::eventually(within, Duration::from_millis(50), || {
            let request = http.get(&url).send();
            async move { request.await.ok().filter(|r| r.status().is_success()).map(drop) }
        })
        .await;
        assert!(ready.is_some(), "{} did not become ready within {within:?}; log: {}", self.url, self.log.display());
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM failed");
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) {
        self.child.start_kill().expect("kill the process");
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {within:?}", self.url))
            .expect("wait for the process")
    }
}
