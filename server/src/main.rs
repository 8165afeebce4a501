//! The `anyforge` command line.

mod assets;
mod codec;
mod generate;
mod media;
mod serve;
mod text;
mod train;
mod workflow;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Decoders and the backbone allocate and free large buffers at a high
// rate; mimalloc reuses them where glibc returns them to the OS and faults
// them back in (measured: SNAC decode 7.2 s -> 4.0 s, docs/codec-benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Turn media into discrete codes and back (image VQ, SNAC audio, video, mesh, text).
    Codec {
        #[command(subcommand)]
        command: codec::CodecCommand,
    },
    /// Serve the OpenAI-compatible HTTP API on a model pack.
    Serve(serve::ServeArgs),
    /// Run a task of a model pack (text-to-image, text-to-speech, ...) and write its output.
    Generate(generate::GenerateArgs),
    /// Run a workflow file (YAML) and write its outputs into a folder.
    Run(workflow::RunArgs),
    /// Run a workflow once per row of a JSONL or CSV file; resumable.
    Render(workflow::RenderArgs),
    /// Check workflow files, print the format's schema, list the nodes.
    Workflow {
        #[command(subcommand)]
        command: workflow::WorkflowCommand,
    },
    /// Complete a prompt with a text model (OpenAI completion JSON with --json).
    Complete(text::CompleteArgs),
    /// Chat with a text model on the terminal, streaming replies.
    Chat(text::ChatArgs),
    /// Train a model pack from a recipe (the starter pack's: assets/recipes/starter.yaml).
    Train(train::TrainArgs),
    /// Evaluate a pack on held-out prompts of the starter world.
    Eval(train::EvalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    kernels::keep_freed_memory();
    let result = match cli.command {
        Command::Media { command } => media::run(command),
        Command::Codec { command } => codec::run(command),
        Command::Serve(args) => serve::serve(args),
        Command::Generate(args) => generate::run(args),
        Command::Run(args) => workflow::run(args),
        Command::Render(args) => workflow::render(args),
        Command::Workflow { command } => workflow::command(command),
        Command::Complete(args) => text::complete(args),
        Command::Chat(args) => text::chat(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => train::eval(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Names the file and the problem; a list of problems (workflow
            // validation) keeps one per line.
            eprintln!("anyforge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
