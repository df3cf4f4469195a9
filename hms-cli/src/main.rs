//! `hmsctl`: the HMS front-desk and scripting tool.
//!
//! Nouns with verbs (`hmsctl patient add`, `hmsctl appointment book`, …). Tables for people;
//! `--output json|csv` and `--quiet` for scripts; documented exit codes.

mod commands;
mod connect;
mod desk;
mod import;
mod interactive;
mod output;

use clap::Parser;
use hms_client::ClientError;
use std::process::ExitCode;

/// One exit code per class of outcome (also in `hmsctl --help`).
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const CONFLICT: u8 = 4;
    pub const RULE: u8 = 5;
    pub const UNAVAILABLE: u8 = 6;
    pub const AUTH: u8 = 7;
    pub const PARTIAL: u8 = 8;
    /// Ctrl-C at a prompt, as a shell reports an interrupted program.
    pub const INTERRUPTED: u8 = 130;
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match &e {
            ClientError::Api { status, body, .. } => Failure {
                code: match status {
                    400 => exit::USAGE,
                    401 | 403 => exit::AUTH,
                    404 => exit::NOT_FOUND,
                    409 | 412 => exit::CONFLICT,
                    422 => exit::RULE,
                    429 | 500..=599 => exit::UNAVAILABLE,
                    _ => exit::OTHER,
                },
                message: format!(
                    "{}: {} (correlation id {})",
                    body.code, body.message, body.correlation_id
                ),
            },
            ClientError::Unavailable { .. } => Failure {
                code: exit::UNAVAILABLE,
                message: e.to_string(),
            },
            ClientError::Protocol { .. } => Failure {
                code: exit::OTHER,
                message: e.to_string(),
            },
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    // Ctrl-C anywhere (a picker raises it itself): the cursor a picker or a progress bar hid
    // is shown again, and hmsctl ends as an interrupted program does.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = console::Term::stderr().show_cursor();
            std::process::exit(exit::INTERRUPTED.into());
        }
    });
    match commands::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
