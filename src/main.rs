//! The `sockets` binary: parse arguments, run the subcommand, report errors.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keep_large_buffers_returnable();
    // Before any thread starts: it clears the variables that announce them.
    cli::remember_passed_sockets();
    let args = cli::Cli::parse();
    cli::logging::init(args.verbose, args.quiet);
    let path = args.command.path();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<cli::UsageError>() {
            Some(usage) => cli::exit_with_usage_error(&path, usage),
            None => {
                cli::say(&format!("error: {error:#}"));
                ExitCode::FAILURE
            }
        },
    }
}

/// Makes glibc serve every allocation of 128 KiB or more with its own
/// mapping, returned to the system when freed. By default glibc raises that
/// threshold after the first large free (up to 32 MiB), after which large
/// input buffers come from the heap and are kept by the process after the
/// connection that needed them is gone: the input budget would bound what
/// is held, but not what the process keeps.
fn keep_large_buffers_returnable() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Output piped into `head` and closed early is not an error worth reporting.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
