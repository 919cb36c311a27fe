//! `sockets cert`: a certificate and key for development and tests.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use sockets::transport::tls::cert::{CertificateRequest, make};

use super::args::whole;
use super::print_line;

#[derive(Debug, Args)]
pub struct CertArgs {
    /// DNS names and IP addresses the certificate is for; the first is also
    /// its common name.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Write the certificate (PEM) to this file.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Write the private key (PEM) to this file, readable by its owner only.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Days the certificate stays valid (1 to 36500).
    #[arg(long, value_name = "N", default_value_t = 365, value_parser = whole(1, 36_500))]
    pub days: u64,
    /// Make a CA, which can sign other certificates (see --issuer-cert).
    #[arg(long)]
    pub ca: bool,
    /// Sign with this CA certificate (PEM) instead of self-signing; with --issuer-key.
    #[arg(long, value_name = "FILE", requires = "issuer_key")]
    pub issuer_cert: Option<PathBuf>,
    /// The private key (PEM) of --issuer-cert.
    #[arg(long, value_name = "FILE", requires = "issuer_cert")]
    pub issuer_key: Option<PathBuf>,
    /// Replace the files if they exist.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(args: CertArgs) -> Result<ExitCode> {
    let issuer = match (&args.issuer_cert, &args.issuer_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        _ => None,
    };
    let made = make(&CertificateRequest {
        names: args.names.clone(),
        days: args.days as i64,
        ca: args.ca,
        issuer,
    })?;
    write(&args.cert, made.cert_pem.as_bytes(), 0o644, args.force)?;
    write(&args.key, made.key_pem.as_bytes(), 0o600, args.force)?;
    let kind = match (args.ca, &args.issuer_cert) {
        (true, _) => "CA certificate".to_owned(),
        (false, Some(issuer)) => format!("certificate signed by {}", issuer.display()),
        (false, None) => "self-signed certificate".to_owned(),
    };
    print_line(&format!(
        "Wrote a {kind} for {} (valid {} days) to {}, and its key to {}",
        args.names.join(", "),
        args.days,
        args.cert.display(),
        args.key.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} exists (remove it, or pass --force)", path.display())
        } else {
            format!("cannot write {}", path.display())
        }
    })?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}
