//! Signals to other processes: the one libc call the CLI (`ccproxy reload`)
//! and the plugins' child processes (their process groups) need.
#![allow(unsafe_code)]

/// kill(2): sends `signal` to `pid` (a negative pid: to that process
/// group); signal 0 only checks that the target is alive and ours to signal.
pub fn send_signal(pid: libc::pid_t, signal: libc::c_int) -> std::io::Result<()> {
    // Safety: kill(2) takes plain integers and touches no memory of ours.
    match unsafe { libc::kill(pid, signal) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
