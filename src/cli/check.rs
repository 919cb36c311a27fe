//! `sockets check`: run the conformance catalogue against a server.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use sockets::check::{CaseReport, CheckConfig, Checker, Profile, Summary, Verdict, cases};
use sockets::escape::Terminal;

use super::UsageError;
use super::args::parse_positive_seconds;
use super::print_line;
use super::target::TargetArgs;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// guide: what the guide's own server does (one request per
    /// connection, byte-exact answers); robust: docs/PROTOCOL.md (also
    /// pipelining, half-close, error answers, limits, isolation).
    #[arg(long, value_enum, default_value_t = ProfileArg::Robust)]
    pub profile: ProfileArg,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Report the CPU time the server process PID used during each case.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Option<u32>,
    /// The server's idle timeout: runs the (advisory) idle-timeout case,
    /// which waits that long.
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub idle_timeout: Option<Duration>,
    /// Run only this case (repeatable); `--list` shows the names.
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// List the cases of the profile and exit.
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    Guide,
    Robust,
}

impl From<ProfileArg> for Profile {
    fn from(profile: ProfileArg) -> Profile {
        match profile {
            ProfileArg::Guide => Profile::Guide,
            ProfileArg::Robust => Profile::Robust,
        }
    }
}

pub async fn run(args: CheckArgs) -> Result<ExitCode> {
    let profile = Profile::from(args.profile);
    if let Some(unknown) = args
        .cases
        .iter()
        .find(|name| !cases::CATALOGUE.iter().any(|case| case.name == name.as_str()))
    {
        return Err(UsageError(format!("no case named {unknown:?} (--list shows them)")).into());
    }
    if let Some(outside) = args.cases.iter().find(|name| {
        !cases::CATALOGUE
            .iter()
            .any(|case| case.name == name.as_str() && case.profiles.contains(&profile))
    }) {
        return Err(UsageError(format!(
            "case {outside:?} is not in the {} profile (--list shows its cases)",
            format!("{profile:?}").to_lowercase()
        ))
        .into());
    }
    if let Some(pid) = args.pid {
        sockets::bench::cpu::CpuTime::of(pid).with_context(|| format!("--pid {pid}: cannot read its CPU time"))?;
    }
    if args.list {
        for case in cases::CATALOGUE.iter().filter(|case| case.profiles.contains(&profile)) {
            print_line(&format!("{:<22} {}", case.name, case.sent))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (endpoint, _) = args.target.split([], 0)?;
    let connector = args.target.connector(endpoint.clone())?;
    let checker = Checker::new(CheckConfig {
        connector,
        profile,
        wait: args.target.timeout().unwrap_or(Duration::from_secs(3600)),
        pid: args.pid,
        idle_timeout: args.idle_timeout,
        only: args.cases,
    });
    let reports = checker.run().await;
    let summary = Summary::of(&reports);
    if args.json {
        let json = serde_json::json!({
            "target": endpoint.to_string(),
            "profile": profile,
            "cases": reports,
            "summary": summary,
        });
        print_line(&serde_json::to_string_pretty(&json)?)?;
    } else {
        print_line(&table(&reports, args.pid.is_some()))?;
        print_line(&format!(
            "{endpoint}, {} profile: {} passed, {} failed, {} warned, {} skipped",
            format!("{profile:?}").to_lowercase(),
            summary.passed,
            summary.failed,
            summary.warned,
            summary.skipped
        ))?;
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The width a column's text is cut to in the table (the JSON has it whole).
const SENT_WIDTH: usize = 36;
const EXPECTED_WIDTH: usize = 36;
const HAPPENED_WIDTH: usize = 60;

/// The results as an aligned text table, escaped for the terminal.
fn table(reports: &[CaseReport], with_cpu: bool) -> String {
    let mut rows = vec![vec![
        "case".to_owned(),
        "sent".to_owned(),
        "expected".to_owned(),
        "happened".to_owned(),
        "verdict".to_owned(),
    ]];
    if with_cpu {
        rows[0].push("server cpu".to_owned());
    }
    for report in reports {
        let mut row = vec![
            report.case.to_owned(),
            cut(report.sent, SENT_WIDTH),
            cut(report.expected, EXPECTED_WIDTH),
            cut(&Terminal(&report.happened).to_string(), HAPPENED_WIDTH),
            match report.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Warn => "warn",
                Verdict::Skip => "skip",
            }
            .to_owned(),
        ];
        if with_cpu {
            row.push(
                report
                    .server_cpu_ms
                    .map_or_else(String::new, |ms| format!("{ms:.0} ms")),
            );
        }
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` cut to `width` characters, with `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }
}
