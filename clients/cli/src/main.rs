//! inferctl: the command-line client of inferd. One subcommand per task,
//! plus model and plugin management; tables for people, `--json` for scripts.
//!
//! Each command group has its module (`text`, `generate`, `vision`, `audio`,
//! `run`, `models`), which defines its commands' arguments and turns them
//! into requests; `output` prints every answer, `connect` reaches the daemon.

mod audio;
mod connect;
mod draw;
mod generate;
mod models;
mod options;
mod output;
mod run;
mod text;
mod vision;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "inferctl",
    version,
    about = "Command-line client for the inferd inference daemon"
)]
struct Cli {
    #[command(flatten)]
    daemon: connect::DaemonAddr,
    #[command(flatten)]
    output: output::Output,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands, in the order `--help` lists them; each one's help text
/// is its arguments struct's doc comment.
#[derive(Subcommand)]
enum Command {
    Classify(text::Classify),
    ZeroShot(text::ZeroShot),
    FillMask(text::FillMask),
    Ner(text::Ner),
    Qa(text::Qa),
    Embed(text::Embed),
    Generate(generate::Generate),
    ClassifyImage(vision::ClassifyImage),
    Detect(vision::Detect),
    Segment(vision::Segment),
    Depth(vision::Depth),
    Summarize(generate::Summarize),
    Translate(generate::Translate),
    Transcribe(audio::Transcribe),
    Say(audio::Say),
    Run(run::Run),
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// List loaded plugins and their tasks.
    Plugins,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("inferctl: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let connect::Clients { inference, models } = cli.daemon.connect().await?;
    let out = &cli.output;
    match cli.command {
        Command::Classify(command) => command.run(inference, out).await,
        Command::ZeroShot(command) => command.run(inference, out).await,
        Command::FillMask(command) => command.run(inference, out).await,
        Command::Ner(command) => command.run(inference, out).await,
        Command::Qa(command) => command.run(inference, out).await,
        Command::Embed(command) => command.run(inference, out).await,
        Command::Generate(command) => command.run(inference, out).await,
        Command::ClassifyImage(command) => command.run(inference, out).await,
        Command::Detect(command) => command.run(inference, out).await,
        Command::Segment(command) => command.run(inference, out).await,
        Command::Depth(command) => command.run(inference, out).await,
        Command::Summarize(command) => command.run(inference, out).await,
        Command::Translate(command) => command.run(inference, out).await,
        Command::Transcribe(command) => command.run(inference, out).await,
        Command::Say(command) => command.run(inference, out).await,
        Command::Run(command) => command.run(inference, out).await,
        Command::Models(command) => command.run(models, out).await,
        Command::Plugins => models::plugins(models, out).await,
    }
}
