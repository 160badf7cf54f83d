//! The `command` harness: any program speaking the protocol on stdin/stdout, in its own process
//! group (so that killing it kills everything it started), with an output limit, its stderr
//! kept (bounded) for the transcript, and a clean stop: close stdin, wait a grace period, SIGTERM
//! the group, then SIGKILL it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::kinds::agents::CommandHarness;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::{Fault, Harness};
use crate::protocol::{AgentMessage, HostMessage};
use crate::sandbox::{self, Plan};

/// Output allowed when the Harness does not say.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 8 << 20;
/// How much of stderr is kept.
const STDERR_KEPT: usize = 64 << 10;
/// How long a harness may take to exit after its stdin is closed.
const GRACE: Duration = Duration::from_secs(2);

/// A running subprocess harness.
#[derive(Debug)]
pub struct Subprocess {
    child: Child,
    pgid: Option<i32>,
    stdin: Option<ChildStdin>,
    stdout: BufReader<tokio::io::Take<tokio::process::ChildStdout>>,
    limit: u64,
    read: u64,
    line: usize,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    ended: Option<String>,
}

/// The environment every command harness starts from: enough to find programs and speak UTF-8,
/// and nothing of the server's own.
pub const BASE_ENV: &[(&str, &str)] =
    &[("PATH", "/usr/local/bin:/usr/bin:/bin"), ("LANG", "C.UTF-8"), ("LC_ALL", "C.UTF-8")];

/// Resolve `path` against `base` unless it is absolute.
pub fn resolve(base: &Path, path: &str) -> std::path::PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

impl Subprocess {
    /// Start `spec.program` unconfined. A program given as a relative path (with a `/`) is
    /// resolved against `base_dir`, as is `workingDir` (which defaults to `base_dir`). The harness
    /// inherits nothing of r5e's environment (database URLs, provider keys): it gets
    /// [`BASE_ENV`], then the Harness's declared `env`, then `env` (the protocol variables).
    pub fn start(spec: &CommandHarness, base_dir: &Path, env: &[(String, String)]) -> Result<Subprocess, Fault> {
        Subprocess::launch(spec, base_dir, env, None)
    }

    /// Start `spec.program` as [`Subprocess::start`] does, but through the `launcher` (the r5e
    /// binary's `sandbox-exec`) following `plan`, whose program, arguments and working directory
    /// are filled in here.
    pub fn launch(
        spec: &CommandHarness,
        base_dir: &Path,
        env: &[(String, String)],
        confined: Option<(&Path, Plan)>,
    ) -> Result<Subprocess, Fault> {
        let program = if spec.program.contains('/') {
            resolve(base_dir, &spec.program).display().to_string()
        } else {
            spec.program.clone()
        };
        let cwd = spec.working_dir.as_deref().map(|d| resolve(base_dir, d)).unwrap_or_else(|| base_dir.to_path_buf());
        let mut cmd = match confined {
            Some((launcher, mut plan)) => {
                plan.program = program.clone();
                plan.args = spec.args.clone();
                plan.cwd = cwd.clone();
                let mut cmd = Command::new(launcher);
                cmd.arg(sandbox::SUBCOMMAND).arg(serde_json::to_string(&plan).expect("plans serialise"));
                cmd
            }
            None => {
                let mut cmd = Command::new(&program);
                cmd.args(&spec.args);
                cmd
            }
        };
        cmd.env_clear()
            .envs(BASE_ENV.iter().copied())
            .envs(&spec.env)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child =
            cmd.spawn().map_err(|e| Fault::Io(format!("cannot start `{program}` in {}: {e}", cwd.display())))?;
        let pgid = child.id().map(|id| id as i32);
        let limit = spec.max_output_bytes.unwrap_or(DEFAULT_OUTPUT_LIMIT);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = child.stderr.take().map(|err| tokio::spawn(keep_tail(err, stderr.clone())));
        Ok(Subprocess {
            stdin: child.stdin.take(),
            child,
            pgid,
            stdout: BufReader::new(stdout.take(limit + 1)),
            limit,
            read: 0,
            line: 0,
            stderr,
            stderr_reader,
            ended: None,
        })
    }

    /// The last bytes the harness wrote to stderr.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    fn signal_group(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is already gone) is the outcome we want.
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }
}

async fn keep_tail(mut from: impl AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut kept = into.lock().expect("stderr lock");
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > STDERR_KEPT {
            let cut = kept.len() - STDERR_KEPT;
            kept.drain(..cut);
        }
    }
}

#[async_trait::async_trait]
impl Harness for Subprocess {
    async fn send(&mut self, message: &HostMessage) -> Result<(), Fault> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(Fault::Io("the harness's stdin is already closed".into()));
        };
        let mut line = serde_json::to_vec(message).expect("host messages serialise");
        line.push(b'\n');
        let written = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        };
        written.await.map_err(|e| Fault::Io(format!("cannot write to the harness (did it exit?): {e}")))
    }

    async fn next(&mut self) -> Result<Option<AgentMessage>, Fault> {
        loop {
            let mut buf = Vec::new();
            let n = self
                .stdout
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|e| Fault::Io(format!("cannot read the harness's output: {e}")))?;
            self.read += n as u64;
            if self.read > self.limit {
                return Err(Fault::OutputLimit(self.limit));
            }
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let text = match std::str::from_utf8(&buf) {
                Ok(t) => t.trim(),
                Err(e) => {
                    let excerpt = String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned();
                    return Err(Fault::Garbage { line: self.line, error: e.to_string(), excerpt });
                }
            };
            if text.is_empty() {
                continue;
            }
            return AgentMessage::parse(text).map(Some).map_err(|error| Fault::Garbage {
                line: self.line,
                error,
                excerpt: text.chars().take(80).collect(),
            });
        }
    }

    async fn finish(&mut self) -> String {
        if let Some(ended) = &self.ended {
            return ended.clone();
        }
        drop(self.stdin.take());
        let mut how = match tokio::time::timeout(GRACE, self.child.wait()).await {
            Ok(Ok(status)) => describe(status),
            Ok(Err(e)) => format!("could not be waited for: {e}"),
            Err(_) => {
                self.signal_group(Signal::SIGTERM);
                match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
                    Ok(Ok(status)) => format!("was stopped with SIGTERM ({})", describe(status)),
                    _ => {
                        self.signal_group(Signal::SIGKILL);
                        let _ = self.child.wait().await;
                        "was killed with SIGKILL".to_string()
                    }
                }
            }
        };
        // Whatever the harness left running in its group goes with it.
        self.signal_group(Signal::SIGKILL);
        // Its stderr ends once the group is gone; read what is left of it.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        let stderr = self.stderr();
        if !stderr.trim().is_empty() {
            let tail: String = stderr.trim().lines().last().unwrap_or_default().chars().take(200).collect();
            how = format!("{how}; last stderr line: {tail}");
        }
        self.ended = Some(how.clone());
        how
    }

    fn usage(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

impl Drop for Subprocess {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.signal_group(Signal::SIGKILL);
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => "exited with status 0".to_string(),
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandHarness {
        CommandHarness {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            max_output_bytes: Some(4096),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn messages_flow_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Subprocess::start(
            &sh(r#"read line; echo "{\"type\":\"log\",\"message\":\"$R5E_TEST\"}"; echo '{"type":"done","outcome":"Succeeded"}'"#),
            dir.path(),
            &[("R5E_TEST".into(), "hello".into())],
        )
        .unwrap();
        h.send(&HostMessage::Reflect { reason: "x".into() }).await.unwrap();
        assert_eq!(h.next().await.unwrap(), Some(AgentMessage::Log { message: "hello".into() }));
        assert!(matches!(h.next().await.unwrap(), Some(AgentMessage::Done { .. })));
        assert_eq!(h.next().await.unwrap(), None);
        assert_eq!(h.finish().await, "exited with status 0");
    }

    #[tokio::test]
    async fn a_harness_inherits_none_of_the_servers_environment() {
        let dir = tempfile::tempdir().unwrap();
        // Whatever the server holds (a database URL, provider keys), the harness sees only its own.
        let script = r#"read line; echo "{\"type\":\"log\",\"message\":\"$(env | sort | tr '\n' ' ')\"}""#;
        let mut spec = sh(script);
        spec.env.insert("DECLARED".into(), "yes".into());
        let mut h = Subprocess::start(&spec, dir.path(), &[("R5E_SESSION".into(), "s".into())]).unwrap();
        h.send(&HostMessage::Reflect { reason: "x".into() }).await.unwrap();
        let Some(AgentMessage::Log { message }) = h.next().await.unwrap() else { panic!("no log") };
        let names: Vec<&str> = message.split_whitespace().filter_map(|kv| kv.split_once('=').map(|(k, _)| k)).collect();
        for name in names.iter().filter(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n)) {
            assert!(
                ["PATH", "LANG", "LC_ALL", "DECLARED", "R5E_SESSION"].contains(name),
                "the harness saw `{name}`: {message}"
            );
        }
        assert!(message.contains("DECLARED=yes") && message.contains("R5E_SESSION=s"), "{message}");
        assert!(std::env::vars().count() > 3, "the test process itself has an environment to leak");
    }

    #[tokio::test]
    async fn garbage_and_floods_are_faults() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Subprocess::start(&sh("echo 'I am not JSON'"), dir.path(), &[]).unwrap();
        let fault = h.next().await.unwrap_err();
        assert!(matches!(fault, Fault::Garbage { line: 1, .. }), "{fault}");
        let mut h = Subprocess::start(&sh("yes '{\"type\":\"log\",\"message\":\"x\"}'"), dir.path(), &[]).unwrap();
        let fault = loop {
            match h.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a flood ended by itself"),
                Err(f) => break f,
            }
        };
        assert_eq!(fault, Fault::OutputLimit(4096));
        h.finish().await;
    }

    #[tokio::test]
    async fn finishing_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        // The harness ignores stdin closing and leaves a grandchild running.
        let mut h =
            Subprocess::start(&sh("trap '' TERM; sleep 300 & echo $! > child.pid; exec sleep 300"), dir.path(), &[])
                .unwrap();
        let pid_file = dir.path().join("child.pid");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !pid_file.exists() || std::fs::read_to_string(&pid_file).unwrap().trim().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the harness never wrote its child's pid");
            tokio::task::yield_now().await;
        }
        let grandchild: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let how = h.finish().await;
        assert!(how.contains("SIGTERM") || how.contains("SIGKILL"), "{how}");
        // SIGKILL is delivered asynchronously: the grandchild must be gone (or a zombie waiting
        // to be reaped) soon after.
        let alive = || {
            nix::sys::signal::kill(Pid::from_raw(grandchild), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default().contains(") Z")
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while alive() {
            assert!(tokio::time::Instant::now() < deadline, "the grandchild {grandchild} survived");
            tokio::task::yield_now().await;
        }
    }
}
