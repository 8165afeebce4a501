//! The `anyforge` command line.

mod media;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "anyforge",
    version,
    about = "Multimodal any-to-any generation: text, image, audio, video and 3D"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and convert media files.
    Media {
        #[command(subcommand)]
        command: media::MediaCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Media { command } => media::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line that names the file and the problem.
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("anyforge: {message}");
            ExitCode::FAILURE
        }
    }
}
