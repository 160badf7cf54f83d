//! What governance against hostile agents costs: minting, attenuating and checking a session's
//! token (against what a person's bearer token costs: a SHA-256 and a map lookup), and starting a
//! confined harness (against starting the same program unconfined).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use domain::{Authority, Digest};
use runtime::sandbox::{self, Limits, Plan};

use crate::Args;
use crate::report::{Report, Row, median};

/// Tokens per measurement.
const TOKENS: usize = 500;
/// Harness starts per measurement.
const STARTS: usize = 40;

fn grant() -> tokens::Grant {
    let authority = |caps: &[&str]| Authority {
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        budgets: [("tool_calls".to_string(), 10)].into_iter().collect(),
        ..Default::default()
    };
    tokens::Grant {
        namespace: "team".into(),
        session: "n-write-a1".into(),
        uid: "0190f6c2-0000-7000-8000-000000000000".into(),
        chain: vec![
            tokens::Level { name: "Graph/g".into(), authority: authority(&["notes.*", "text.analyse"]) },
            tokens::Level { name: "Node/n".into(), authority: authority(&["notes.write", "text.analyse"]) },
            tokens::Level { name: "Task/n-write".into(), authority: authority(&["notes.write", "text.analyse"]) },
            tokens::Level { name: "AgentSession/n-write-a1".into(), authority: authority(&["notes.write"]) },
        ],
        reads: vec![("Task".into(), "n-write".into()), ("Artifact".into(), "changes".into())],
        creates: false,
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    }
}

/// A person's token as the API checks it: the SHA-256 of the presented token, looked up.
fn bearer_lookup(tokens: &[String], known: &HashMap<Digest, usize>) -> usize {
    tokens.iter().filter(|t| known.contains_key(&Digest::of(t.as_bytes()))).count()
}

fn per_second(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

pub async fn tokens(args: &Args, report: &mut Report) -> Result<()> {
    eprintln!("session tokens");
    let issuer = tokens::Issuer::generate();
    let verifier = issuer.verifier();
    let people: Vec<String> = (0..TOKENS).map(|i| format!("{}{:032x}", uuid::Uuid::new_v4().simple(), i)).collect();
    let known: HashMap<Digest, usize> = people.iter().enumerate().map(|(i, t)| (Digest::of(t.as_bytes()), i)).collect();
    let baseline = median(args.runs, |_| {
        let (people, known) = (&people, &known);
        async move {
            let start = Instant::now();
            anyhow::ensure!(bearer_lookup(people, known) == TOKENS);
            Ok(start.elapsed())
        }
    })
    .await?;
    let mint = median(args.runs, |_| {
        let issuer = &issuer;
        async move {
            let g = grant();
            let start = Instant::now();
            for _ in 0..TOKENS {
                issuer.mint(&g)?;
            }
            Ok(start.elapsed())
        }
    })
    .await?;
    let minted: Vec<String> = (0..TOKENS).map(|_| issuer.mint(&grant()).map(|m| m.token)).collect::<Result<_, _>>()?;
    let request = tokens::Request {
        action: "get",
        kind: "Artifact",
        namespace: "team",
        name: "changes",
        capability: None,
        touches: None,
    };
    let check = median(args.runs, |_| {
        let (minted, verifier) = (&minted, &verifier);
        async move {
            let now = chrono::Utc::now();
            let start = Instant::now();
            for t in minted {
                verifier.authorize(t, &request, now)?;
            }
            Ok(start.elapsed())
        }
    })
    .await?;
    let baseline_rate = per_second(TOKENS, baseline);
    let name = "SHA-256 + lookup of a person's token";
    report.add(Row {
        what: "session token: mint (root + 4 chain blocks)".into(),
        unit: "tokens/s",
        ours: per_second(TOKENS, mint),
        baseline_name: name.into(),
        baseline: baseline_rate,
    });
    report.add(Row {
        what: "session token: check one request (signatures + Datalog)".into(),
        unit: "checks/s",
        ours: per_second(TOKENS, check),
        baseline_name: name.into(),
        baseline: baseline_rate,
    });
    Ok(())
}

/// The `r5e` binary beside this one, if it was built.
fn r5e_binary() -> Option<PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join("r5e");
    path.exists().then_some(path)
}

fn run(cmd: &mut std::process::Command) -> Result<()> {
    let status = cmd.stdin(std::process::Stdio::null()).status()?;
    anyhow::ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(())
}

pub async fn sandbox_start(args: &Args, dir: &Path, report: &mut Report) -> Result<()> {
    eprintln!("sandboxed harness start");
    let Some(r5e) = r5e_binary() else {
        eprintln!("  no r5e binary beside r5e-bench (cargo build --release -p r5e); its row is left out");
        return Ok(());
    };
    if let Err(e) = sandbox::available() {
        eprintln!("  {e}; its row is left out");
        return Ok(());
    }
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(&workspace)?;
    let program = "/bin/true";
    let plan = Plan {
        program: program.into(),
        cwd: workspace.clone(),
        read_write: vec![workspace.clone()],
        read_only: sandbox::SYSTEM_PATHS.iter().map(PathBuf::from).collect(),
        devices: sandbox::DEVICES.iter().map(PathBuf::from).collect(),
        limits: Limits::from_budgets(&Default::default()),
        cgroup: Some(sandbox::cgroup_name("bench")),
        parent: std::process::id() as i32,
        ..Default::default()
    };
    let plan = serde_json::to_string(&plan)?;
    let confined = median(args.runs, |_| {
        let (r5e, plan, workspace) = (&r5e, &plan, &workspace);
        async move {
            let start = Instant::now();
            for _ in 0..STARTS {
                run(std::process::Command::new(r5e).arg(sandbox::SUBCOMMAND).arg(plan).current_dir(workspace))?;
            }
            Ok(start.elapsed())
        }
    })
    .await?;
    let unconfined = median(args.runs, |_| async move {
        let start = Instant::now();
        for _ in 0..STARTS {
            run(&mut std::process::Command::new(program))?;
        }
        Ok(start.elapsed())
    })
    .await?;
    report.add(Row {
        what: "harness start to exit, confined (keeper + Landlock + cgroup)".into(),
        unit: "starts/s",
        ours: per_second(STARTS, confined),
        baseline_name: "the same program started unconfined".into(),
        baseline: per_second(STARTS, unconfined),
    });
    Ok(())
}
