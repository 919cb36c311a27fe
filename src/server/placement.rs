//! Keeping each connection on the core its packets arrive on.
//!
//! A connection's packets are processed by the kernel on one CPU (the
//! network card's queue for it; on loopback, the sending client's CPU).
//! When the thread that serves the connection runs elsewhere, every packet
//! costs a wake-up across cores and the socket's memory moves between
//! their caches: measured on this project's 2-core machine, that made a
//! one-shot connection cost 1.4× what it cost on one thread (BENCHMARKS.md).
//!
//! So with a listener per core, each core's thread is pinned to one CPU and
//! its listener is marked with that CPU (`SO_INCOMING_CPU`): the kernel
//! then hands a new connection to the listener of the CPU that received its
//! first packet, and the whole connection stays there. This is done only
//! where it can work and cannot crowd: when the cores cover every CPU the
//! process may use (a container given 2 CPUs' worth of a 16-CPU host runs
//! 2 cores, which pinned would pile every such process onto CPUs 0 and 1),
//! and on Linux 6.1 or later, whose `SO_REUSEPORT` groups honour the mark
//! (before, connections are spread by hash and pinned threads would only
//! lose the scheduler's freedom).

use std::io;

use crate::transport::listen::PortableListener;

/// The CPUs that `cores` cores should be pinned to, one each in turn, or
/// none when pinning could not help (see the module's documentation).
pub fn cpus_for(cores: usize) -> Vec<usize> {
    let cpus = allowed_cpus();
    if cores < 2 || cores < cpus.len() || !groups_follow_incoming_cpu() {
        return Vec::new();
    }
    cpus
}

/// Whether this kernel hands a `SO_REUSEPORT` group's connections to the
/// member marked with the CPU they arrive on (Linux 6.1 and later).
fn groups_follow_incoming_cpu() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    kernel_at_least(&release, (6, 1))
}

/// Whether a kernel release string (`6.18.44-fc`) is at least `wanted`.
fn kernel_at_least(release: &str, wanted: (u32, u32)) -> bool {
    let mut parts = release.trim().split(['.', '-']).map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= wanted,
        _ => false,
    }
}

/// The CPUs this process may run on, in order (its affinity mask, which a
/// service manager or `taskset` may have narrowed); empty if unknown.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity writes
    // at most the size it is given into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) };
    if got != 0 {
        tracing::debug!("cannot read this process's CPUs: {}", io::Error::last_os_error());
        return Vec::new();
    }
    let limit = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    // SAFETY: CPU_ISSET reads the set, for CPUs below its size.
    (0..limit)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Runs the calling thread on `cpu` only.
///
/// # Errors
/// When the kernel refuses (a CPU outside the allowed set, or a sandbox
/// that forbids it).
pub fn pin_this_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: CPU_SET writes inside the zeroed set for CPUs below its size,
    // and sched_setaffinity only reads the set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= usize::try_from(libc::CPU_SETSIZE).unwrap_or(0) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    unsafe { libc::CPU_SET(cpu, &mut set) };
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to hand `listener` the connections whose first packet
/// arrives on `cpu` (TCP only; a Unix socket has no such thing).
///
/// # Errors
/// The `setsockopt` failure.
pub fn steer(listener: &PortableListener, cpu: usize) -> io::Result<()> {
    match listener {
        PortableListener::Tcp(tcp) => socket2::SockRef::from(tcp).set_cpu_affinity(cpu),
        PortableListener::Unix(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v769", (6, 1)));
        assert!(kernel_at_least("6.1.0-13-amd64\n", (6, 1)));
        assert!(kernel_at_least("7.0", (6, 1)));
        assert!(!kernel_at_least("6.0.19", (6, 1)));
        assert!(!kernel_at_least("5.15.0-91-generic", (6, 1)));
        assert!(!kernel_at_least("", (6, 1)));
        assert!(!kernel_at_least("linux", (6, 1)));
    }

    #[test]
    fn cores_are_pinned_only_when_they_cover_every_allowed_cpu() {
        let cpus = allowed_cpus();
        assert!(cpus_for(1).is_empty(), "one core is never pinned");
        if cpus.len() > 1 {
            assert!(cpus_for(cpus.len() - 1).is_empty(), "fewer cores than CPUs");
        }
        if groups_follow_incoming_cpu() && cpus.len() > 1 {
            assert_eq!(cpus_for(cpus.len()), cpus);
            assert_eq!(cpus_for(cpus.len() + 3), cpus);
        }
    }

    #[test]
    fn a_pinned_thread_runs_only_on_its_cpu_and_a_listener_keeps_its_mark() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "no allowed CPU found");
        let last = *cpus.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_this_thread(last).unwrap();
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
        // This thread is not pinned by the other's call.
        assert_eq!(allowed_cpus(), cpus);
        assert!(pin_this_thread(usize::MAX).is_err());

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listener = PortableListener::Tcp(tcp);
        steer(&listener, last).unwrap();
        let PortableListener::Tcp(tcp) = &listener else {
            unreachable!()
        };
        assert_eq!(socket2::SockRef::from(tcp).cpu_affinity().unwrap(), last);
    }
}
