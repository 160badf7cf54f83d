//! CAS store and resolve throughput for small, medium and large blobs, against `sha256sum` over
//! the same files.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use domain::Digest;
use storage::{Cas, FsCas};

use crate::report::{Report, Row, median, time_command};
use crate::{Args, raw};

/// Deterministic, incompressible-looking bytes.
fn blob(seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub async fn run(args: &Args, dir: &Path, report: &mut Report) -> Result<()> {
    eprintln!("CAS (filesystem)");
    let mut sizes = vec![(1usize << 10, 2000usize, "1 KiB"), (1 << 20, 64, "1 MiB")];
    if !args.quick {
        sizes.push((256 << 20, 1, "256 MiB"));
    }
    for (size, count, label) in sizes {
        let blobs: Vec<Vec<u8>> = (0..count).map(|i| blob(i as u64 + size as u64, size)).collect();
        let total_mb = (size * count) as f64 / 1e6;
        let last: RefCell<(Vec<Digest>, PathBuf)> = RefCell::default();
        let store_time = median(args.runs, |i| {
            let blobs = blobs.clone();
            let run_dir = dir.join(format!("cas-{label}-{i}").replace(' ', ""));
            let last = &last;
            async move {
                let cas = Cas::new(Arc::new(FsCas::open(&run_dir)?));
                let start = Instant::now();
                let mut out = Vec::with_capacity(blobs.len());
                for b in blobs {
                    out.push(cas.store(b).await?);
                }
                let t = start.elapsed();
                *last.borrow_mut() = (out, run_dir);
                Ok(t)
            }
        })
        .await?;
        let (digests, root) = last.into_inner();
        let cas = Cas::new(Arc::new(FsCas::open(&root)?));
        let files: Vec<String> =
            digests.iter().map(|d| root.join("blobs/sha256").join(d.hex()).display().to_string()).collect();
        let resolve_time = median(args.runs, |_| {
            let cas = cas.clone();
            let digests = digests.clone();
            async move {
                let start = Instant::now();
                for d in &digests {
                    cas.resolve(d).await?;
                }
                Ok(start.elapsed())
            }
        })
        .await?;
        let raw = median(args.runs, |_| {
            let files = files.clone();
            async move { time_command("sha256sum", &files) }
        })
        .await?;
        let baseline = total_mb / raw.as_secs_f64();
        let writes = median(args.runs, |i| {
            let blobs = &blobs;
            let out = dir.join(format!("raw-{label}-{i}").replace(' ', ""));
            async move { raw::durable_writes(&out, blobs) }
        })
        .await?;
        report.add(Row {
            what: format!("CAS store, {count} x {label}"),
            unit: "MB/s",
            ours: total_mb / store_time.as_secs_f64(),
            baseline_name: "the same durable writes (fsync, rename), no hashing".into(),
            baseline: total_mb / writes.as_secs_f64(),
        });
        report.add(Row {
            what: format!("CAS resolve (re-verified), {count} x {label}"),
            unit: "MB/s",
            ours: total_mb / resolve_time.as_secs_f64(),
            baseline_name: "sha256sum over the same files".into(),
            baseline,
        });
    }
    Ok(())
}
