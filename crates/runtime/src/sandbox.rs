//! Confining a command harness. A harness is run through the hidden `r5e sandbox-exec` launcher,
//! in two stages, because the workspace forbids `unsafe` (so no `pre_exec` hook):
//!
//! 1. **The keeper** ([`keep`]), the child r5e starts: it asks the kernel for SIGTERM when r5e
//!    dies (parent-death signal), becomes the reaper of every process its harness leaves behind
//!    (child subreaper), puts itself in a cgroup with the session's process and memory limits
//!    where the host allows one, and starts stage 2. When stage 2 exits, or r5e ends the session,
//!    or r5e dies, it kills every process below it and exits. It is not confined itself, so the
//!    harness (which may only signal processes in its own Landlock domain) cannot kill it.
//! 2. **The confined stage** ([`confine`]) sets the resource limits, restricts itself with
//!    Landlock (read-write in its workspace, read-only on the system and the Harness's base
//!    directory, nothing else; TCP connections only to the ports it was given; no signals or
//!    abstract sockets outside its domain), then `exec`s the harness, which inherits all of it.
//!
//! The plan both stages follow is one JSON argument ([`Plan`]).

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The launcher's subcommand.
pub const SUBCOMMAND: &str = "sandbox-exec";
/// The flag that selects stage 2.
pub const CONFINED: &str = "--confined";
/// The exit status of a launcher that could not confine (so the harness never ran).
pub const CANNOT_CONFINE: i32 = 125;
/// What a launcher that could not confine prints first on stderr.
pub const CANNOT_CONFINE_PREFIX: &str = "r5e sandbox: cannot confine the harness:";

/// What the launcher does, decided by r5e. The default confines with Landlock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The program (a path, or a name looked up in `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where it runs.
    pub cwd: PathBuf,
    /// Paths (and what is below them) it may read, write, create and delete in.
    pub read_write: Vec<PathBuf>,
    /// Paths it may read and execute.
    pub read_only: Vec<PathBuf>,
    /// Device files it may read and write (`/dev/null` and friends).
    pub devices: Vec<PathBuf>,
    /// TCP ports it may connect to (the API's, and what the Harness declares).
    pub connect_ports: Vec<u16>,
    /// Resource limits.
    pub limits: Limits,
    /// The cgroup to create for the session (a name under `r5e/` in each hierarchy), if any.
    pub cgroup: Option<String>,
    /// r5e's process id: the keeper exits at once if its parent is already another process.
    pub parent: i32,
    /// Confine the files and the network with Landlock. Without it (a Harness with
    /// `sandbox: none`), the launcher still keeps the process tree: it dies with the session and
    /// with r5e, within the session's limits.
    #[serde(default = "yes")]
    pub landlock: bool,
}

fn yes() -> bool {
    true
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            program: String::new(),
            args: Vec::new(),
            cwd: PathBuf::new(),
            read_write: Vec::new(),
            read_only: Vec::new(),
            devices: Vec::new(),
            connect_ports: Vec::new(),
            limits: Limits::default(),
            cgroup: None,
            parent: 0,
            landlock: true,
        }
    }
}

/// Resource limits of a confined harness; each absent one is left as inherited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// CPU time of each process, in seconds (`RLIMIT_CPU`).
    pub cpu_seconds: Option<u64>,
    /// Memory: the cgroup's limit where there is one, else address space (`RLIMIT_AS`).
    pub memory_bytes: Option<u64>,
    /// The largest file it may write (`RLIMIT_FSIZE`).
    pub file_bytes: Option<u64>,
    /// Processes: the cgroup's `pids.max` where there is one, else `RLIMIT_NPROC`.
    pub processes: Option<u64>,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

/// System paths a confined harness may read and execute (those that exist). Not `/proc`: on it
/// a process could read the environment and open files of the server's other processes, which
/// Landlock does not stop for processes of the same user; the harness gets its own
/// `/proc/<pid>` and the few system-wide files programs read ([`PROC_FILES`]).
pub const SYSTEM_PATHS: &[&str] =
    &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys"];
/// The system-wide files of `/proc` a confined harness may read.
pub const PROC_FILES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/filesystems",
    "/proc/mounts",
];
/// Devices a confined harness may read and write.
pub const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

/// The budgets (in a session's authority) that become resource limits, and their defaults.
pub mod budgets {
    /// CPU seconds per process; no default (the session's wall-clock limit applies).
    pub const CPU_SECONDS: &str = "cpu_seconds";
    /// Memory of the whole harness (its cgroup) or of each process (address space).
    pub const MEMORY_BYTES: &str = "memory_bytes";
    /// Processes (and threads) at once.
    pub const PROCESSES: &str = "processes";
    /// The largest file it may write.
    pub const FILE_BYTES: &str = "file_bytes";
    /// Default memory: 4 GiB.
    pub const DEFAULT_MEMORY: u64 = 4 << 30;
    /// Default processes and threads.
    pub const DEFAULT_PROCESSES: u64 = 256;
    /// Default largest file: 1 GiB.
    pub const DEFAULT_FILE: u64 = 1 << 30;
    /// Open files per process.
    pub const OPEN_FILES: u64 = 1024;
}

impl Limits {
    /// Only the limits the budgets set, without the defaults (for a Harness that runs
    /// unconfined by choice: it keeps whatever limits it had, unless its authority says).
    pub fn set_by(b: &std::collections::BTreeMap<String, u64>) -> Limits {
        Limits {
            cpu_seconds: b.get(budgets::CPU_SECONDS).copied(),
            memory_bytes: b.get(budgets::MEMORY_BYTES).copied(),
            file_bytes: b.get(budgets::FILE_BYTES).copied(),
            processes: b.get(budgets::PROCESSES).copied(),
            open_files: None,
        }
    }

    /// The limits of a confined harness: what the budgets set, and defaults for the rest.
    pub fn from_budgets(b: &std::collections::BTreeMap<String, u64>) -> Limits {
        Limits {
            cpu_seconds: b.get(budgets::CPU_SECONDS).copied(),
            memory_bytes: Some(b.get(budgets::MEMORY_BYTES).copied().unwrap_or(budgets::DEFAULT_MEMORY)),
            file_bytes: Some(b.get(budgets::FILE_BYTES).copied().unwrap_or(budgets::DEFAULT_FILE)),
            processes: Some(b.get(budgets::PROCESSES).copied().unwrap_or(budgets::DEFAULT_PROCESSES)),
            open_files: Some(budgets::OPEN_FILES),
        }
    }
}

/// `paths`, canonical, with every `hidden` path cut out: a path that holds a hidden one is
/// replaced by its entries (recursively), a path inside one (or a symlink into one) is dropped.
/// Landlock rules only add access, so this is how "the base directory but not the data
/// directory below it" is said.
pub fn without_hidden(paths: &[PathBuf], hidden: &[PathBuf]) -> Vec<PathBuf> {
    let hidden: Vec<PathBuf> = hidden.iter().map(|h| std::fs::canonicalize(h).unwrap_or_else(|_| h.clone())).collect();
    let mut out = Vec::new();
    for p in paths {
        carve(p, &hidden, &mut out, 0);
    }
    out.sort();
    out.dedup();
    out
}

fn carve(path: &Path, hidden: &[PathBuf], out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(real) = std::fs::canonicalize(path) else { return };
    if hidden.iter().any(|h| real.starts_with(h)) {
        return;
    }
    if !hidden.iter().any(|h| h.starts_with(&real)) {
        out.push(real);
        return;
    }
    // A hidden path is below this one: give its entries instead, down to the hidden one.
    if depth > 32 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&real) else { return };
    for entry in entries.flatten() {
        carve(&entry.path(), hidden, out, depth + 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: the keeper

/// Run the keeper: start stage 2 with the same plan and keep its whole process tree. Returns the
/// exit status to end with.
pub fn keep(plan: &Plan, plan_json: &str) -> i32 {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};

    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        return refuse(&format!("no parent-death signal: {e}"));
    }
    // r5e may have died between starting us and the line above.
    if plan.parent != 0 && nix::unistd::getppid().as_raw() != plan.parent {
        return refuse("r5e ended before the harness started");
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return refuse(&format!("cannot keep the harness's processes: {e}"));
    }
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        mask.add(s);
    }
    if let Err(e) = mask.thread_block() {
        return refuse(&format!("cannot block signals: {e}"));
    }
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => return refuse(&format!("no signalfd: {e}")),
    };
    let cgroup = match &plan.cgroup {
        Some(name) => Cgroup::create(name, &plan.limits),
        None => None,
    };
    // The confined stage joins the cgroup itself, before it can start anything: the keeper stays
    // out of it, so that the memory limit's OOM killer never picks the keeper.
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return refuse(&format!("cannot find the launcher: {e}")),
    };
    let stage2 = Command::new(exe).arg(SUBCOMMAND).arg(CONFINED).arg(plan_json).current_dir(&plan.cwd).spawn();
    let child = match stage2 {
        Ok(c) => c,
        Err(e) => return refuse(&format!("cannot start the confined stage in {}: {e}", plan.cwd.display())),
    };
    let child_pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let status = loop {
        let Ok(Some(info)) = signals.read_signal() else { continue };
        if info.ssi_signo == Signal::SIGCHLD as u32 {
            match reap(child_pid) {
                Some(status) => break status,
                None => continue,
            }
        }
        // r5e ended the session, or r5e itself died.
        break 128 + info.ssi_signo as i32;
    };
    kill_tree(cgroup.as_ref());
    if let Some(cg) = cgroup {
        cg.remove();
    }
    status
}

/// Reap every exited child; the status of `main` if it was among them.
fn reap(main: nix::unistd::Pid) -> Option<i32> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => found = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => found = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

/// Kill every process below the keeper (and in its cgroup) until none is left.
fn kill_tree(cgroup: Option<&Cgroup>) {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let me = std::process::id() as i32;
    for _ in 0..10_000 {
        let mut pids = children_of_self();
        if let Some(cg) = cgroup {
            pids.extend(cg.members().into_iter().filter(|p| *p != me));
        }
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Reap what died; a zombie stays listed as a child until it is reaped.
        let deadline = std::time::Instant::now() + Duration::from_millis(50);
        while std::time::Instant::now() < deadline {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => std::thread::yield_now(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

/// The keeper's children, read from `/proc` (orphans of the harness are reparented to it).
fn children_of_self() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

fn refuse(reason: &str) -> i32 {
    let _ = writeln!(std::io::stderr(), "{CANNOT_CONFINE_PREFIX} {reason}");
    CANNOT_CONFINE
}

// ---------------------------------------------------------------------------------------------
// Stage 2: confine, then exec

/// Set the limits, restrict this process with Landlock and become the harness. Returns only on
/// failure, with the reason.
pub fn confine(plan: &Plan, in_cgroup: bool) -> Result<Infallible, String> {
    set_limits(&plan.limits, in_cgroup)?;
    if plan.landlock {
        landlock_self(plan)?;
    }
    let program = CString::new(plan.program.clone()).map_err(|_| "the program's name holds a NUL byte".to_string())?;
    let mut argv = vec![program.clone()];
    for a in &plan.args {
        argv.push(CString::new(a.clone()).map_err(|_| "an argument holds a NUL byte".to_string())?);
    }
    nix::unistd::execvp(&program, &argv).map_err(|e| format!("cannot run `{}`: {e}", plan.program))
}

/// Stage 2's entry: `Ok` never returns; the error is printed and becomes the exit status.
pub fn confine_main(plan_json: &str) -> i32 {
    let plan: Plan = match serde_json::from_str(plan_json) {
        Ok(p) => p,
        Err(e) => return refuse(&format!("the plan is not valid: {e}")),
    };
    // Join the session's cgroup before anything else can run; the limits it cannot take become
    // rlimits.
    let in_cgroup = match plan.cgroup.as_deref().and_then(Cgroup::open) {
        Some(cg) => match cg.join(std::process::id()) {
            Ok(()) => true,
            Err(e) => return refuse(&format!("cannot join the session's cgroup: {e}")),
        },
        None => false,
    };
    match confine(&plan, in_cgroup) {
        Ok(never) => match never {},
        Err(reason) => refuse(&reason),
    }
}

/// Stage 1's entry.
pub fn keep_main(plan_json: &str) -> i32 {
    match serde_json::from_str::<Plan>(plan_json) {
        Ok(plan) => keep(&plan, plan_json),
        Err(e) => refuse(&format!("the plan is not valid: {e}")),
    }
}

fn set_limits(limits: &Limits, in_cgroup: bool) -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    let set = |resource: Resource, value: u64, what: &str| {
        setrlimit(resource, value, value).map_err(|e| format!("cannot limit {what} to {value}: {e}"))
    };
    // No core dumps: a dump of a harness could hold what it was given.
    set(Resource::RLIMIT_CORE, 0, "core dumps")?;
    if let Some(v) = limits.cpu_seconds {
        set(Resource::RLIMIT_CPU, v, "CPU seconds")?;
    }
    if let Some(v) = limits.file_bytes {
        set(Resource::RLIMIT_FSIZE, v, "file size")?;
    }
    if let Some(v) = limits.open_files {
        set(Resource::RLIMIT_NOFILE, v, "open files")?;
    }
    if !in_cgroup {
        if let Some(v) = limits.memory_bytes {
            set(Resource::RLIMIT_AS, v, "address space")?;
        }
        if let Some(v) = limits.processes {
            set(Resource::RLIMIT_NPROC, v, "processes")?;
        }
    }
    Ok(())
}

/// The Landlock ABI this release asks for: filesystem (with truncate and device ioctls), TCP
/// ports, and the signal and abstract-socket scopes.
const ABI: landlock::ABI = landlock::ABI::V6;

fn landlock_self(plan: &Plan) -> Result<(), String> {
    use landlock::{
        Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
        path_beneath_rules,
    };
    let fail = |e: &dyn std::fmt::Display| format!("Landlock: {e}");
    let existing = |paths: &[PathBuf]| -> Vec<PathBuf> { paths.iter().filter(|p| p.exists()).cloned().collect() };
    // This process becomes the harness (exec keeps the pid): its own /proc entry, and no other.
    let mut read_only = plan.read_only.clone();
    read_only.extend(PROC_FILES.iter().map(PathBuf::from));
    read_only.push(PathBuf::from(format!("/proc/{}", std::process::id())));
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI))
        .map_err(|e| fail(&e))?
        .handle_access(AccessNet::from_all(ABI))
        .map_err(|e| fail(&e))?
        .scope(Scope::from_all(ABI))
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?
        .add_rules(path_beneath_rules(existing(&read_only), AccessFs::from_read(ABI)))
        .map_err(|e| fail(&e))?
        .add_rules(path_beneath_rules(existing(&plan.read_write), AccessFs::from_all(ABI)))
        .map_err(|e| fail(&e))?
        .add_rules(path_beneath_rules(
            existing(&plan.devices),
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev,
        ))
        .map_err(|e| fail(&e))?;
    for port in &plan.connect_ports {
        ruleset = ruleset.add_rule(NetPort::new(*port, AccessNet::ConnectTcp)).map_err(|e| fail(&e))?;
    }
    let status = ruleset.restrict_self().map_err(|e| fail(&e))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(()),
        RulesetStatus::PartiallyEnforced => Err(format!(
            "this kernel's Landlock is older than ABI {} and would confine the harness only in part \
             (not its network or signals)",
            ABI as i32
        )),
        RulesetStatus::NotEnforced => Err("this kernel does not enforce Landlock".into()),
    }
}

/// [`available`], asked once per process.
pub fn available_once() -> &'static Result<(), String> {
    static AVAILABLE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    AVAILABLE.get_or_init(available)
}

/// Whether this kernel can confine a harness wholly (Landlock with every right of [`ABI`]:
/// files, TCP ports, signals and abstract sockets), or why not.
pub fn available() -> Result<(), String> {
    use landlock::{Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope};
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI))
        .and_then(|r| r.handle_access(AccessNet::from_all(ABI)))
        .and_then(|r| r.scope(Scope::from_all(ABI)))
        .and_then(|r| r.create())
        .map(|_| ())
        .map_err(|e| format!("Landlock (ABI {}) is not available: {e}", ABI as i32))
}

// ---------------------------------------------------------------------------------------------
// cgroups

/// The hierarchies to use: cgroup v2's unified one, or v1's `pids` and `memory`.
fn hierarchies() -> Vec<(PathBuf, String)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut out = Vec::new();
    for line in own.lines() {
        // `id:controllers:path`
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let mount = match controllers {
            "" if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() => PathBuf::from("/sys/fs/cgroup"),
            c if c.split(',').any(|c| c == "pids") => PathBuf::from("/sys/fs/cgroup/pids"),
            c if c.split(',').any(|c| c == "memory") => PathBuf::from("/sys/fs/cgroup/memory"),
            _ => continue,
        };
        out.push((mount, path.trim_start_matches('/').to_string()));
    }
    out
}

/// The session's cgroup in each hierarchy that could be written.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    /// Where the keeper goes back to before the directories are removed.
    parents: Vec<PathBuf>,
}

impl Cgroup {
    /// Create `r5e/<name>` below this process's cgroup in each hierarchy and set its limits; `None`
    /// where the host gives no writable cgroup.
    pub fn create(name: &str, limits: &Limits) -> Option<Cgroup> {
        let mut cg = Cgroup { dirs: Vec::new(), parents: Vec::new() };
        for (mount, own) in hierarchies() {
            let parent = mount.join(&own);
            let base = parent.join("r5e");
            if std::fs::create_dir_all(&base).is_err() {
                continue;
            }
            // cgroup v2 hands controllers down explicitly.
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+pids +memory");
            let _ = std::fs::write(base.join("cgroup.subtree_control"), "+pids +memory");
            let dir = base.join(name);
            if std::fs::create_dir(&dir).is_err() && !dir.is_dir() {
                continue;
            }
            if let Some(p) = limits.processes {
                let _ = std::fs::write(dir.join("pids.max"), p.to_string());
            }
            if let Some(m) = limits.memory_bytes {
                let _ = std::fs::write(dir.join("memory.max"), m.to_string());
                let _ = std::fs::write(dir.join("memory.limit_in_bytes"), m.to_string());
            }
            cg.dirs.push(dir);
            cg.parents.push(parent);
        }
        // Only a cgroup that limits processes is worth joining.
        let limited = cg.dirs.iter().any(|d| d.join("pids.max").exists());
        if limited { Some(cg) } else { cg.remove_dirs() }
    }

    /// The cgroup `name` made by this process's keeper, if there is one.
    pub fn open(name: &str) -> Option<Cgroup> {
        let mut cg = Cgroup { dirs: Vec::new(), parents: Vec::new() };
        for (mount, own) in hierarchies() {
            // The keeper's cgroup is this process's, until it joins the session's.
            let parent = mount.join(&own);
            let dir = parent.join("r5e").join(name);
            if dir.is_dir() {
                cg.dirs.push(dir);
                cg.parents.push(parent);
            }
        }
        if cg.dirs.is_empty() { None } else { Some(cg) }
    }

    fn remove_dirs(self) -> Option<Cgroup> {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
        None
    }

    /// Move `pid` into the cgroup in every hierarchy.
    pub fn join(&self, pid: u32) -> std::io::Result<()> {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in it.
    pub fn members(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| t.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Leave it and remove it.
    pub fn remove(self) {
        let me = std::process::id().to_string();
        for (d, parent) in self.dirs.iter().zip(&self.parents) {
            let _ = std::fs::write(parent.join("cgroup.procs"), &me);
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// End what earlier r5e processes left behind: every session cgroup under `r5e/` whose keeper is
/// gone (its name starts with the pid of the r5e process that made it, which is no longer
/// running) has its processes killed and is removed. Returns what was killed, by session.
pub fn clean_strays() -> Vec<Stray> {
    let mut strays: Vec<Stray> = Vec::new();
    for (mount, own) in hierarchies() {
        let Ok(entries) = std::fs::read_dir(mount.join(&own).join("r5e")) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = name.split('.').next().and_then(|p| p.parse::<i32>().ok()) else { continue };
            if owner_alive(owner, &name) {
                continue;
            }
            let cg = Cgroup { dirs: vec![entry.path()], parents: vec![mount.join(&own)] };
            // `<pid>.<start time>.<session uid>`
            let session_uid = name.splitn(3, '.').nth(2).unwrap_or_default().to_string();
            let mut killed = Vec::new();
            for _ in 0..100 {
                let members = cg.members();
                if members.is_empty() {
                    break;
                }
                for pid in members {
                    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
                        .is_ok()
                    {
                        killed.push(pid);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = std::fs::remove_dir(entry.path());
            killed.sort_unstable();
            killed.dedup();
            if killed.is_empty() {
                continue;
            }
            // The same session in two hierarchies (pids and memory) is one stray.
            match strays.iter_mut().find(|s| s.session_uid == session_uid) {
                Some(s) => {
                    s.processes.extend(killed);
                    s.processes.sort_unstable();
                    s.processes.dedup();
                }
                None => strays.push(Stray { session_uid, processes: killed }),
            }
        }
    }
    strays
}

/// Processes of a session that an earlier r5e process left running, ended by [`clean_strays`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stray {
    /// The uid of the session they belonged to.
    pub session_uid: String,
    /// The pids that were killed.
    pub processes: Vec<i32>,
}

/// The cgroup name for a session run by this process: `<pid>.<start time>.<session>`, so that a
/// later process can tell whether its maker still runs.
pub fn cgroup_name(session_uid: &str) -> String {
    let pid = std::process::id() as i32;
    format!("{pid}.{}.{}", start_time(pid).unwrap_or(0), session_uid)
}

fn owner_alive(pid: i32, name: &str) -> bool {
    let started = name.split('.').nth(1).and_then(|s| s.parse::<u64>().ok());
    match (start_time(pid), started) {
        (Some(now), Some(then)) => now == then,
        _ => false,
    }
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_can_confine() {
        // The machines r5e is tested on support Landlock; a kernel without it fails closed.
        available().expect("Landlock is available");
    }

    #[test]
    fn start_times_identify_processes() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        let name = cgroup_name("uid");
        assert!(owner_alive(me, &name), "{name}");
        assert!(!owner_alive(me, &format!("{me}.1.uid")));
        assert!(!owner_alive(i32::MAX, &format!("{}.1.uid", i32::MAX)));
    }

    #[test]
    fn hidden_paths_are_cut_out_of_what_is_given() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("base");
        for d in ["data/cas", "harnesses", "docs/deep"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("agent.py"), "").unwrap();
        std::os::unix::fs::symlink(base.join("data"), base.join("sneaky")).unwrap();
        let real = std::fs::canonicalize(&base).unwrap();
        let given = without_hidden(std::slice::from_ref(&base), &[base.join("data")]);
        assert_eq!(given, vec![real.join("agent.py"), real.join("docs"), real.join("harnesses")]);
        // Nothing hidden below: the path itself.
        assert_eq!(without_hidden(std::slice::from_ref(&base), &[root.path().join("elsewhere")]), vec![real.clone()]);
        // A path inside the hidden one is dropped.
        assert!(without_hidden(&[base.join("data/cas")], &[base.join("data")]).is_empty());
    }

    #[test]
    fn budgets_become_limits() {
        let b = [("memory_bytes".to_string(), 1 << 20), ("cpu_seconds".to_string(), 3)].into_iter().collect();
        let l = Limits::from_budgets(&b);
        assert_eq!(l.memory_bytes, Some(1 << 20));
        assert_eq!(l.cpu_seconds, Some(3));
        assert_eq!(l.processes, Some(budgets::DEFAULT_PROCESSES));
    }

    #[test]
    fn plans_survive_the_trip_through_json() {
        let plan = Plan {
            program: "sh".into(),
            args: vec!["-c".into(), "true".into()],
            cwd: "/tmp".into(),
            limits: Limits { cpu_seconds: Some(5), ..Default::default() },
            ..Default::default()
        };
        let back: Plan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(back, plan);
    }
}
