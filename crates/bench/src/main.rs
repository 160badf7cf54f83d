//! `r5e-bench`: measures the storage contracts and prints one table, each figure beside a raw
//! baseline measured in the same run on the same bytes (a plain SQLite insert of the same rows,
//! `sha256sum` over the same files), with the ratio. Every figure is the median of several runs.
//! Run it through `scripts/bench`, which builds it in release mode.

mod cas;
mod events;
mod report;

use clap::Parser;

/// Benchmark the storage contracts against raw baselines.
#[derive(Debug, Parser)]
struct Args {
    /// Repetitions per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Events per append measurement.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events in the chain that `verify_chain` checks.
    #[arg(long, default_value_t = 200_000)]
    verify_events: usize,
    /// Skip the 256 MiB blob (for a quick run).
    #[arg(long)]
    quick: bool,
    /// Where to put the scratch files (defaults to a temporary directory).
    #[arg(long)]
    scratch: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scratch = match &args.scratch {
        Some(p) => tempfile::tempdir_in(p)?,
        None => tempfile::tempdir()?,
    };
    let mut report = report::Report::default();
    events::run(&args, scratch.path(), &mut report).await?;
    cas::run(&args, scratch.path(), &mut report).await?;
    report.print();
    Ok(())
}
