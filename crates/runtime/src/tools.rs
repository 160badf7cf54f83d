//! Tool calls: every call a session makes is checked, in order, against its Workflow step's
//! `toolRefs` (when the step names any), the Tool's existence,
//! the session's capabilities (and expiry), its `tool_calls` budget, what the call touches
//! outside r5e (a Tool's `target`) against the session's scope, the Cedar policy
//! (`call_tool`, recorded as an admission decision) and the Tool's input schema; only then is
//! the Tool's program run, with the arguments as JSON on stdin. Allowed or not, each call is a
//! `tool.call` event naming the digests of its arguments and result (both kept in the CAS).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use admission::Identity;
use chrono::Utc;
use domain::chain::EventDraft;
use domain::kinds::agents::ToolSpec;
use domain::{Authority, Digest, ObjectKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::context::{Context, spec};
use crate::harness::command::resolve;
use crate::protocol::HostMessage;
use crate::sandbox::{self, Limits, Plan};

/// The budget a tool call spends.
pub const TOOL_CALLS: &str = "tool_calls";
/// Output a tool may print.
const TOOL_OUTPUT_LIMIT: u64 = 1 << 20;

/// Who is calling.
#[derive(Debug)]
pub struct Caller<'a> {
    /// The session's identity in admission.
    pub identity: &'a Identity,
    /// The session.
    pub session: &'a ObjectKey,
    /// Exactly the authority it holds.
    pub authority: &'a Authority,
    /// The Tools its Workflow step names, if it names any: no other may be called.
    pub step_tools: Option<&'a [String]>,
    /// The session was resumed after its process died: a call it already made is answered
    /// from the record, not made again.
    pub resumed: bool,
    /// The session's uid (its name may be reused by a later incarnation).
    pub session_uid: &'a str,
}

/// Make one call and answer it; `spent` is the session's `tool_calls` so far, raised when the
/// call is allowed. The second value says, when the call was refused because the session's
/// `tool_calls` budget is spent, which ends the session.
pub async fn call(
    ctx: &Context,
    caller: &Caller<'_>,
    spent: &mut u64,
    id: &str,
    tool: &str,
    args: &Value,
) -> (HostMessage, Option<String>) {
    let budget_spent = crate::budgets::over(caller.authority, TOOL_CALLS, *spent, 1);
    (answer(ctx, caller, spent, id, tool, args).await, budget_spent)
}

async fn answer(
    ctx: &Context,
    caller: &Caller<'_>,
    spent: &mut u64,
    id: &str,
    tool: &str,
    args: &Value,
) -> HostMessage {
    let key = ObjectKey::new("Tool", &caller.session.namespace, tool);
    let args_bytes = serde_json::to_vec(args).unwrap_or_default();
    let args_digest = ctx.cas.store(args_bytes).await.ok();
    if caller.resumed {
        match recorded(ctx, caller, &key, id, args_digest.as_ref()).await {
            Recorded::Made(result) => {
                *spent += 1;
                return HostMessage::ToolResult { id: id.into(), ok: true, result: Some(result), error: None };
            }
            Recorded::InFlight => {
                *spent += 1;
                let error = "this call was running when the session's process died; whether it took effect is \
                             unknown, so it is not made again"
                    .to_string();
                return HostMessage::ToolResult { id: id.into(), ok: false, result: None, error: Some(error) };
            }
            Recorded::Nothing => {}
        }
    }
    let outcome = checked_run(ctx, caller, spent, &key, args, id, args_digest.as_ref()).await;
    let (result_digest, reason) = match &outcome {
        Ok(v) => (ctx.cas.store(serde_json::to_vec(v).unwrap_or_default()).await.ok(), None),
        Err(e) => (None, Some(e.clone())),
    };
    let event = EventDraft {
        type_: "tool.call".into(),
        actor: caller.identity.actor(),
        subject: key.to_string(),
        data: json!({
            "session": caller.session.to_string(),
            "sessionUid": caller.session_uid,
            "callId": id,
            "allowed": outcome.is_ok(),
            "reason": reason,
            "argumentsDigest": args_digest.map(|d| d.to_string()),
            "resultDigest": result_digest.map(|d: Digest| d.to_string()),
        }),
    };
    if let Err(e) = ctx.store().events.append(event).await {
        return HostMessage::ToolResult {
            id: id.into(),
            ok: false,
            result: None,
            error: Some(format!("the call could not be recorded, so it is refused: {e}")),
        };
    }
    match outcome {
        Ok(result) => HostMessage::ToolResult { id: id.into(), ok: true, result: Some(result), error: None },
        Err(error) => HostMessage::ToolResult { id: id.into(), ok: false, result: None, error: Some(error) },
    }
}

/// The event written just before a Tool's program starts, after every check passed.
pub const TOOL_INTENT: &str = "tool.intent";

/// What the chain says of a call a resumed session makes again.
enum Recorded {
    /// It was made, and this is its result.
    Made(Value),
    /// Its program was started and never reported: it may have taken effect.
    InFlight,
    /// It was not made (never reached, or refused): it is checked and made now.
    Nothing,
}

/// What became of the call `id` with these arguments that the session made before its process
/// died (see [`Recorded`]).
async fn recorded(ctx: &Context, caller: &Caller<'_>, key: &ObjectKey, id: &str, args: Option<&Digest>) -> Recorded {
    let query = storage::EventQuery {
        types: vec!["tool.call".into(), TOOL_INTENT.into()],
        subject: Some(key.to_string()),
        ..Default::default()
    };
    let Ok(events) = ctx.store().events.query(&query).await else { return Recorded::Nothing };
    let this_call = |e: &&domain::chain::Event| {
        e.data["session"] == caller.session.to_string()
            && e.data["sessionUid"] == caller.session_uid
            && e.data["callId"] == id
            && e.data["argumentsDigest"].as_str() == args.map(ToString::to_string).as_deref()
    };
    let ours: Vec<&domain::chain::Event> = events.iter().filter(this_call).collect();
    if let Some(made) = ours.iter().find(|e| e.type_ == "tool.call" && e.data["allowed"] == true) {
        let result = async {
            let digest: Digest = made.data["resultDigest"].as_str()?.parse().ok()?;
            serde_json::from_slice(&ctx.cas.resolve(&digest).await.ok()?).ok()
        };
        return match result.await {
            Some(v) => Recorded::Made(v),
            // Made, but its result is unreadable: as unknown as a call cut off.
            None => Recorded::InFlight,
        };
    }
    let started = ours.iter().filter(|e| e.type_ == TOOL_INTENT).count();
    let ended = ours.iter().filter(|e| e.type_ == "tool.call").count();
    if started > 0 && ended < started { Recorded::InFlight } else { Recorded::Nothing }
}

async fn checked_run(
    ctx: &Context,
    caller: &Caller<'_>,
    spent: &mut u64,
    key: &ObjectKey,
    args: &Value,
    id: &str,
    args_digest: Option<&Digest>,
) -> Result<Value, String> {
    if let Some(named) = caller.step_tools
        && !named.contains(&key.name)
    {
        return Err(format!("the Workflow step names the Tools {}, not `{}`", named.join(", "), key.name));
    }
    let tool = ctx.get(key).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("there is no {key}"))?;
    let spec: ToolSpec = spec(&tool).map_err(|e| e.to_string())?;
    let now = Utc::now();
    if caller.authority.is_expired(now) {
        return Err("the session's authority has expired".into());
    }
    if !caller.authority.allows_capability(&spec.capability, now) {
        return Err(format!("the session does not hold the capability `{}` that {key} needs", spec.capability));
    }
    if let Some(reason) = crate::budgets::over(caller.authority, TOOL_CALLS, *spent, 1) {
        return Err(format!("refused: {reason}"));
    }
    let total = *spent + 1;
    // What the call touches outside r5e, if the Tool says: the session's scope must cover it.
    let touches = match &spec.target {
        Some(target) => {
            let touched = target.of(args).map_err(|e| format!("{key}: {e}"))?;
            if !caller.authority.allows_scope(&touched, now) {
                return Err(format!("`{touched}` is outside the session's scope"));
            }
            Some(touched)
        }
        None => None,
    };
    ctx.admission
        .authorize(caller.identity, policy::Action::CallTool, &tool, touches.as_deref())
        .await
        .map_err(|e| format!("policy refused the call: {e}"))?;
    if !spec.input_schema.is_empty() {
        let schema = Value::Object(spec.input_schema.clone());
        let validator =
            jsonschema::validator_for(&schema).map_err(|e| format!("{key} has an invalid input schema: {e}"))?;
        let errors: Vec<String> = validator.iter_errors(args).map(|e| format!("{}: {e}", e.instance_path())).collect();
        if !errors.is_empty() {
            return Err(format!("the arguments do not match {key}'s input schema: {}", errors.join("; ")));
        }
    }
    *spent = total;
    let Some(command) = spec.command else {
        return Err(format!("{key} has no program to run"));
    };
    // On the chain before the program starts: a session resumed after its process died mid-call
    // learns that the call may have taken effect, and does not make it again.
    let intent = EventDraft {
        type_: TOOL_INTENT.into(),
        actor: caller.identity.actor(),
        subject: key.to_string(),
        data: json!({
            "session": caller.session.to_string(),
            "sessionUid": caller.session_uid,
            "callId": id,
            "argumentsDigest": args_digest.map(ToString::to_string),
        }),
    };
    ctx.store()
        .events
        .append(intent)
        .await
        .map_err(|e| format!("the call could not be recorded before it ran, so it is refused: {e}"))?;
    run_program(ctx, caller, &command, args).await
}

/// Run a Tool's program. Where this process confines harnesses (it has a launcher), the program is
/// confined the same way: it reads the system and the base directory, writes only in the calling
/// session's workspace, connects only to the API, under the session's resource budgets; if it
/// cannot be confined, the call is refused.
async fn run_program(
    ctx: &Context,
    caller: &Caller<'_>,
    command: &domain::kinds::agents::ToolCommand,
    args: &Value,
) -> Result<Value, String> {
    let program = if command.program.contains('/') {
        resolve(&ctx.config.base_dir, &command.program).display().to_string()
    } else {
        command.program.clone()
    };
    let mut cmd = match &ctx.config.sandbox.launcher {
        Some(launcher) => {
            sandbox::available_once().clone().map_err(|e| format!("the tool's program cannot be confined: {e}"))?;
            let session = caller.session;
            let workspace = ctx.config.work_dir.join(&session.namespace).join(&session.name);
            std::fs::create_dir_all(&workspace).map_err(|e| format!("cannot create {}: {e}", workspace.display()))?;
            let mut read: Vec<PathBuf> = sandbox::SYSTEM_PATHS.iter().map(PathBuf::from).collect();
            read.push(ctx.config.base_dir.clone());
            if command.program.contains('/') {
                read.push(PathBuf::from(&program));
            }
            let plan = Plan {
                program: program.clone(),
                args: command.args.clone(),
                cwd: ctx.config.base_dir.clone(),
                read_write: vec![workspace],
                read_only: sandbox::without_hidden(&read, &ctx.config.sandbox.hidden),
                devices: sandbox::DEVICES.iter().map(PathBuf::from).collect(),
                connect_ports: ctx.config.sandbox.connect_ports.clone(),
                limits: Limits::from_budgets(&caller.authority.budgets),
                cgroup: ctx
                    .config
                    .sandbox
                    .cgroups
                    .then(|| sandbox::cgroup_name(&format!("tool-{}", uuid::Uuid::new_v4().simple()))),
                parent: std::process::id() as i32,
                landlock: true,
            };
            let mut cmd = tokio::process::Command::new(launcher);
            cmd.arg(sandbox::SUBCOMMAND).arg(serde_json::to_string(&plan).expect("plans serialise"));
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(&command.args);
            cmd
        }
    };
    // A tool's program, like a harness, inherits nothing of the server's environment.
    let mut child = cmd
        .env_clear()
        .envs(crate::harness::command::BASE_ENV.iter().copied())
        .current_dir(&ctx.config.base_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the tool's program `{program}`: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = serde_json::to_vec(args).unwrap_or_default();
    let mut stdout = child.stdout.take().expect("stdout is piped").take(TOOL_OUTPUT_LIMIT + 1);
    let mut stderr = child.stderr.take().expect("stderr is piped").take(4096);
    let limit = Duration::from_secs(command.timeout_seconds.unwrap_or(60));
    let work = async {
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = tokio::time::timeout(limit, work)
        .await
        .map_err(|_| format!("the tool's program did not finish within {} s", limit.as_secs()))?;
    if out.len() as u64 > TOOL_OUTPUT_LIMIT {
        return Err(format!("the tool printed more than {TOOL_OUTPUT_LIMIT} bytes"));
    }
    let status = status.map_err(|e| e.to_string())?;
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        return Err(format!("the tool's program failed ({status}): {}", err.trim()));
    }
    let text = String::from_utf8_lossy(&out).trim().to_string();
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
