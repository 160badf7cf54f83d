//! The benchmark table: one row per measurement, r5e beside its baseline, and their ratio.

use std::time::Duration;

use comfy_table::{Table, presets};

/// One measured comparison.
#[derive(Debug)]
pub struct Row {
    /// What was measured.
    pub what: String,
    /// The unit of both figures (`events/s`, `MB/s`).
    pub unit: &'static str,
    /// r5e's figure (median).
    pub ours: f64,
    /// What the baseline is.
    pub baseline_name: String,
    /// The baseline's figure (median), measured in the same run.
    pub baseline: f64,
}

/// All rows of a run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Add a row and echo it to stderr as progress.
    pub fn add(&mut self, row: Row) {
        eprintln!("  {}: {:.0} {} vs {:.0} ({})", row.what, row.ours, row.unit, row.baseline, row.baseline_name);
        self.rows.push(row);
    }

    /// Print the table on stdout.
    pub fn print(&self) {
        let mut t = Table::new();
        t.load_style(presets::ASCII_MARKDOWN);
        t.set_header(vec!["measurement", "r5e", "baseline", "baseline is", "r5e / baseline"]);
        for r in &self.rows {
            t.add_row(vec![
                r.what.clone(),
                format!("{} {}", human(r.ours), r.unit),
                format!("{} {}", human(r.baseline), r.unit),
                r.baseline_name.clone(),
                format!("{:.2}", r.ours / r.baseline),
            ]);
        }
        println!("{t}");
    }
}

fn human(x: f64) -> String {
    if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

/// The median of `runs` measurements of `f`, each returning the elapsed time of its work.
pub async fn median<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        times.push(f(i).await?);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Time an external command (the baselines that are other programs, such as `sha256sum`).
pub fn time_command(program: &str, args: &[String]) -> anyhow::Result<Duration> {
    let start = std::time::Instant::now();
    let out = std::process::Command::new(program).args(args).stdout(std::process::Stdio::null()).status()?;
    anyhow::ensure!(out.success(), "{program} failed");
    Ok(start.elapsed())
}
