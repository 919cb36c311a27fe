//! A bench run's results: the numbers people compare, as text for a
//! terminal and as JSON for scripts.

use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{ErrorCounts, ErrorKind, Timeline};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of nanoseconds; `None` when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<LatencySummary> {
        if histogram.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(LatencySummary {
            min: us(histogram.min()),
            mean: histogram.mean() / 1000.0,
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p99_9: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
        })
    }
}

impl LatencySummary {
    /// `min ..., p50 ..., ...` for the text report.
    pub(super) fn line(&self) -> String {
        format!(
            "min {}, p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
            format_micros(self.min),
            format_micros(self.p50),
            format_micros(self.p90),
            format_micros(self.p99),
            format_micros(self.p99_9),
            format_micros(self.max)
        )
    }
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `app` or `echo`.
    pub bench: &'static str,
    pub target: String,
    /// How the load was applied, in words (`persistent, 64 connections, pipeline 16`).
    pub load: String,
    pub elapsed_seconds: f64,
    /// Correct responses (app) — absent for echo.
    pub requests: Option<u64>,
    pub requests_per_second: Option<f64>,
    /// Bytes moved: sent and received for app, echoed back for echo.
    pub bytes: u64,
    pub megabytes_per_second: f64,
    /// Microseconds; absent when nothing completed or for echo. With a
    /// rate, corrected for coordinated omission (from when each request was due).
    pub latency_us: Option<LatencySummary>,
    /// With a rate: microseconds from when each request was actually sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected_us: Option<LatencySummary>,
    /// Requests sent whose response never came because the connection
    /// failed (app only).
    pub unanswered: Option<u64>,
    /// Requests sent again on a new connection because the server closed
    /// theirs cleanly before answering (a server stopping gracefully; app only).
    pub retried: Option<u64>,
    /// Requests sent on one connection before the run to check the server
    /// (app only; not counted in `requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_requests: Option<u64>,
    pub errors: ErrorTable,
    /// The run was ended early (Ctrl-C); the figures cover what was measured.
    pub interrupted: bool,
    /// TLS handshakes, when the load used TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshakes: Option<HandshakeReport>,
    /// With `--server-pid`: the server's CPU time over the run, per unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu: Option<super::cpu::ServerCpu>,
    pub timeline: Timeline,
}

/// TLS handshakes made during a run.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeReport {
    pub full: u64,
    pub resumed: u64,
    pub per_second: f64,
}

/// Error counts, every kind listed (zeros included) so nothing looks hidden.
#[derive(Debug, Clone)]
pub struct ErrorTable(pub ErrorCounts);

impl Serialize for ErrorTable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(ErrorKind::ALL.len() + 1))?;
        for kind in ErrorKind::ALL {
            map.serialize_entry(kind.label(), &self.0.get(kind))?;
        }
        map.serialize_entry("total", &self.0.total())?;
        map.end()
    }
}

impl Report {
    /// Total errors.
    pub fn error_total(&self) -> u64 {
        self.errors.0.total()
    }
}

/// Formats microseconds with a unit that keeps them readable.
pub fn format_micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "target      {}", self.target)?;
        writeln!(f, "load        {}", self.load)?;
        match self.requests {
            Some(requests) => writeln!(
                f,
                "completed   {requests} requests in {:.2} s, {} errors",
                self.elapsed_seconds,
                self.error_total()
            )?,
            None => writeln!(
                f,
                "completed   {} bytes echoed in {:.2} s, {} errors",
                self.bytes,
                self.elapsed_seconds,
                self.error_total()
            )?,
        }
        match self.requests_per_second {
            Some(rps) => writeln!(
                f,
                "throughput  {rps:.0} requests/s, {:.1} MB/s",
                self.megabytes_per_second
            )?,
            None => writeln!(f, "throughput  {:.1} MB/s", self.megabytes_per_second)?,
        }
        if let Some(l) = &self.latency_us {
            let note = if self.latency_uncorrected_us.is_some() {
                " (from when each request was due)"
            } else {
                ""
            };
            writeln!(f, "latency     {}{note}", l.line())?;
        }
        if let Some(l) = &self.latency_uncorrected_us {
            writeln!(f, "uncorrected {} (from when each request was sent)", l.line())?;
        }
        if let Some(tls) = &self.tls_handshakes {
            writeln!(
                f,
                "handshakes  {} full, {} resumed, {:.0} TLS handshakes/s",
                tls.full, tls.resumed, tls.per_second
            )?;
        }
        if let Some(cpu) = &self.server_cpu {
            writeln!(
                f,
                "server cpu  {:.2} s (user {:.2}, system {:.2}) by pid {}: {} per {}",
                cpu.user_seconds + cpu.system_seconds,
                cpu.user_seconds,
                cpu.system_seconds,
                cpu.pid,
                format_micros(cpu.per_unit_us),
                cpu.unit
            )?;
        }
        if let Some(unanswered) = self.unanswered.filter(|n| *n > 0) {
            writeln!(f, "unanswered  {unanswered} requests sent on connections that failed")?;
        }
        if let Some(probe) = self.probe_requests {
            writeln!(
                f,
                "probe       {probe} request(s) on one connection before the run, not counted above"
            )?;
        }
        if let Some(retried) = self.retried.filter(|n| *n > 0) {
            writeln!(
                f,
                "retried     {retried} requests, sent again after the server closed their connection between answers"
            )?;
        }
        if self.interrupted {
            writeln!(
                f,
                "interrupted the run was stopped early; the figures cover what was measured"
            )?;
        }
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .filter(|kind| self.errors.0.get(**kind) > 0)
            .map(|kind| format!("{} {}", kind.label(), self.errors.0.get(*kind)))
            .collect();
        write!(
            f,
            "errors      {}",
            if errors.is_empty() {
                "none".to_string()
            } else {
                errors.join(", ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{new_histogram, record};
    use std::time::Duration;

    #[test]
    fn text_and_json_carry_the_same_numbers() {
        let mut histogram = new_histogram();
        for us in 1..=1000 {
            record(&mut histogram, Duration::from_micros(us));
        }
        let mut errors = ErrorCounts::default();
        errors.add(ErrorKind::Timeout);
        let report = Report {
            bench: "app",
            target: "127.0.0.1 port 1".into(),
            load: "persistent, 1 connection".into(),
            elapsed_seconds: 2.0,
            requests: Some(1000),
            requests_per_second: Some(500.0),
            bytes: 2_000_000,
            megabytes_per_second: 1.0,
            latency_us: LatencySummary::of(&histogram),
            latency_uncorrected_us: LatencySummary::of(&histogram),
            unanswered: Some(3),
            retried: Some(2),
            probe_requests: Some(2),
            errors: ErrorTable(errors),
            interrupted: true,
            tls_handshakes: Some(HandshakeReport {
                full: 10,
                resumed: 990,
                per_second: 500.0,
            }),
            server_cpu: None,
            timeline: Timeline::default(),
        };
        let text = report.to_string();
        assert!(text.contains("completed   1000 requests in 2.00 s, 1 errors"), "{text}");
        assert!(text.contains("throughput  500 requests/s, 1.0 MB/s"), "{text}");
        assert!(text.contains("p50 500.") && text.contains("max 1.00 ms"), "{text}");
        assert!(text.contains("(from when each request was due)"), "{text}");
        assert!(text.contains("uncorrected min "), "{text}");
        assert!(text.contains("unanswered  3 requests"), "{text}");
        assert!(text.contains("retried     2 requests"), "{text}");
        assert!(text.contains("probe       2 request(s) on one connection"), "{text}");
        assert!(text.contains("interrupted the run was stopped early"), "{text}");
        assert!(
            text.contains("handshakes  10 full, 990 resumed, 500 TLS handshakes/s"),
            "{text}"
        );
        assert!(text.ends_with("errors      timeout 1"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["errors"]["timeout"], 1);
        assert_eq!(json["errors"]["wrong answer"], 0);
        assert_eq!(json["errors"]["total"], 1);
        assert_eq!(json["requests"], 1000);
        assert!((json["latency_us"]["p99"].as_f64().unwrap() - 990.0).abs() < 2.0);
        assert_eq!(json["unanswered"], 3);
        assert_eq!(json["interrupted"], true);
    }
}
