//! Children that do not outlive Berth.

use std::os::unix::process::CommandExt;

/// Makes `command`'s child receive `signal` when Berth dies, however it dies (`kill -9`
/// included), and refuses to start it at all when Berth already died between the fork
/// and the exec.
///
/// The kernel sends the signal when the *thread* that spawned the child ends; Berth
/// spawns from its runtime's worker threads, which live as long as the process.
/// Changing user ids clears the setting, which is why it is made here, in the child's
/// last step before `exec`, after the switch.
pub fn die_with_parent(command: &mut std::process::Command, signal: libc::c_int) {
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of ours; the
    // closure allocates only on its error path, where the child is about to fail.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::other("its parent exited before it started"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// The kernel treats the end of the spawning thread like the death of the parent,
    /// so a short-lived thread plays a Berth that dies, without killing the test.
    #[test]
    fn the_child_dies_with_the_thread_that_started_it() {
        let handle = std::thread::spawn(|| {
            let mut command = std::process::Command::new("sleep");
            command.arg("30");
            die_with_parent(&mut command, libc::SIGKILL);
            command.spawn().expect("spawning sleep").id()
        });
        let pid = handle.join().expect("the spawning thread");
        // Reaped by nobody yet: a zombie counts as gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sleep {pid} outlived its parent thread"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
