//! A server's CPU time, read from `/proc/PID/stat`, so that a run can say
//! what each unit of work cost the server. On a machine where the load
//! generator and the server share the cores, throughput mostly measures
//! which side is cheaper; the server's CPU per request does not.

use std::time::Duration;

use serde::Serialize;

/// User and system CPU time a process has used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    /// Reads process `pid`'s CPU time.
    ///
    /// # Errors
    /// When the process does not exist (or is not ours to read), or its
    /// `stat` line is not what Linux writes.
    pub fn of(pid: u32) -> std::io::Result<CpuTime> {
        let path = format!("/proc/{pid}/stat");
        let line = std::fs::read_to_string(&path)
            .map_err(|error| std::io::Error::new(error.kind(), format!("reading {path}: {error}")))?;
        parse_stat(&line).ok_or_else(|| std::io::Error::other(format!("{path} is not a process stat line")))
    }

    /// The time used between `earlier` and this reading.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

/// Fields 14 and 15 (utime, stime, in clock ticks) of a stat line. The
/// command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so counting starts after the last `)`.
fn parse_stat(line: &str) -> Option<CpuTime> {
    let after_name = &line[line.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 12th from here.
    let mut fields = after_name.split_whitespace().skip(11);
    let ticks = |text: Option<&str>| text?.parse::<u64>().ok();
    let (user, system) = (ticks(fields.next())?, ticks(fields.next())?);
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    let to_duration = |ticks: u64| Duration::from_nanos(ticks * 1_000_000_000 / per_second);
    Some(CpuTime {
        user: to_duration(user),
        system: to_duration(system),
    })
}

/// What a run cost the server, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCpu {
    pub pid: u32,
    pub user_seconds: f64,
    pub system_seconds: f64,
    /// Microseconds of server CPU (user + system) per unit of work.
    pub per_unit_us: f64,
    /// The unit: `request`, `connection` or `MB`.
    pub unit: &'static str,
}

impl ServerCpu {
    /// `used` spread over `units` units of work; `None` when nothing was done.
    pub fn of(pid: u32, used: CpuTime, units: f64, unit: &'static str) -> Option<ServerCpu> {
        (units > 0.0).then(|| ServerCpu {
            pid,
            user_seconds: used.user.as_secs_f64(),
            system_seconds: used.system.as_secs_f64(),
            per_unit_us: used.total().as_secs_f64() * 1e6 / units,
            unit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_after_a_hostile_command_name() {
        // A command name with spaces and a parenthesis, as a process can choose.
        let line = "4242 (evil) 1 2 3) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 123 0 0";
        let cpu = parse_stat(line).unwrap();
        // SAFETY: as above.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(cpu.user, Duration::from_nanos(250 * 1_000_000_000 / hz));
        assert_eq!(cpu.system, Duration::from_nanos(50 * 1_000_000_000 / hz));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn our_own_cpu_time_grows_with_work() {
        let before = CpuTime::of(std::process::id()).unwrap();
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let used = CpuTime::of(std::process::id()).unwrap().since(before);
        assert!(used.total() >= Duration::from_millis(20), "{used:?}");
        assert!(CpuTime::of(u32::MAX).is_err());
    }
}
