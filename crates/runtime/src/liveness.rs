//! Whether the process that holds a lease is gone, when that can be known for certain: a lease
//! names its holder's process as `<boot id>/<pid namespace>/<pid>/<start time>`, and a process
//! that sees the same boot and the same pid namespace can look the holder up in `/proc`. If there
//! is no such process, or one with another start time (the pid was reused), the holder is gone and
//! its leases need not be waited out. Anywhere else (another machine, another container) nothing
//! is certain, and the lease's expiry decides.

use std::sync::OnceLock;

/// This process, as a lease records it (`None` where `/proc` cannot say).
pub fn this_process() -> Option<String> {
    static ME: OnceLock<Option<String>> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        Some(format!("{}/{}/{pid}/{}", boot_id()?, pid_namespace()?, start_time(pid)?))
    })
    .clone()
}

/// True only when `process` (as [`this_process`] writes it) is certainly no longer running.
pub fn is_gone(process: &str) -> bool {
    let mut parts = process.split('/');
    let (Some(boot), Some(ns), Some(pid), Some(started), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    if boot_id().as_deref() != Some(boot) || pid_namespace().as_deref() != Some(ns) {
        return false;
    }
    match start_time(pid) {
        Some(now) => now != started,
        // `/proc/<pid>` hidden from this user (hidepid) is not proof of death: only "no such
        // process" is.
        None => i32::try_from(pid).is_ok_and(|p| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None) == Err(nix::errno::Errno::ESRCH)
        }),
    }
}

fn boot_id() -> Option<String> {
    Some(std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_string())
}

fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_str()?;
    Some(text.trim_start_matches("pid:[").trim_end_matches(']').to_string())
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().nth(19)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_not_gone_and_an_ended_one_is() {
        let me = this_process().expect("this kernel has /proc");
        assert!(!is_gone(&me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let started = start_time(pid);
        child.wait().unwrap();
        let theirs =
            format!("{}/{}/{pid}/{}", boot_id().unwrap(), pid_namespace().unwrap(), started.unwrap_or_default());
        assert!(is_gone(&theirs), "{theirs}");
        // A reused pid: this process's pid with another start time.
        let parts: Vec<&str> = me.split('/').collect();
        assert!(is_gone(&format!("{}/{}/{}/1", parts[0], parts[1], parts[2])));
    }

    #[test]
    fn a_process_of_another_boot_or_namespace_is_never_called_gone() {
        let me = this_process().unwrap();
        let parts: Vec<&str> = me.split('/').collect();
        assert!(!is_gone(&format!("another-boot/{}/999999999/1", parts[1])));
        assert!(!is_gone(&format!("{}/{}0/999999999/1", parts[0], parts[1])));
        for garbage in ["", "a/b/c", "a/b/c/d/e", "x/y/not-a-pid/1"] {
            assert!(!is_gone(garbage), "{garbage}");
        }
    }
}
