use super::*;
use biscuit_auth::macros::block;
use chrono::Duration as Span;
use serde_json::json;

fn authority(caps: &[&str]) -> Authority {
    Authority { capabilities: caps.iter().map(|c| c.to_string()).collect(), ..Default::default() }
}

fn scoped(caps: &[&str], scope: &[&str]) -> Authority {
    Authority { scope: scope.iter().map(|s| s.to_string()).collect(), ..authority(caps) }
}

fn grant() -> Grant {
    Grant {
        namespace: "team".into(),
        session: "s1".into(),
        uid: "uid-1".into(),
        chain: vec![
            Level { name: "Graph/g".into(), authority: scoped(&["fs.*", "notes.write"], &["r5e:*", "repo:notes/*"]) },
            Level {
                name: "Node/n".into(),
                authority: scoped(&["fs.read", "notes.write"], &["r5e:Node/*", "r5e:Artifact/*", "repo:notes/*"]),
            },
            Level {
                name: "Task/t".into(),
                authority: scoped(&["fs.read", "notes.write"], &["r5e:Node/*", "r5e:Artifact/*", "repo:notes/*"]),
            },
            Level {
                name: "AgentSession/s1".into(),
                authority: scoped(&["fs.read"], &["r5e:Artifact/*", "repo:notes/2.4/*"]),
            },
        ],
        reads: vec![("Artifact".into(), "draft".into()), ("Task".into(), "t".into())],
        creates: true,
        expires_at: Utc::now() + Span::hours(1),
    }
}

fn get<'a>(kind: &'a str, name: &'a str) -> Request<'a> {
    Request { action: "get", kind, namespace: "team", name, capability: None, touches: None }
}

fn tool(capability: &str) -> Request<'_> {
    Request {
        action: "call_tool",
        kind: "Tool",
        namespace: "team",
        name: "t",
        capability: Some(capability),
        touches: None,
    }
}

#[test]
fn a_session_reads_its_inputs_outright_and_nothing_else() {
    let issuer = Issuer::generate();
    let minted = issuer.mint(&grant()).unwrap();
    let v = issuer.verifier();
    let claims = v.authorize(&minted.token, &get("Artifact", "draft"), Utc::now()).unwrap();
    assert!(claims.reads_outright);
    assert_eq!((claims.namespace.as_str(), claims.session.as_str(), claims.uid.as_str()), ("team", "s1", "uid-1"));
    assert_eq!(claims.authority, scoped(&["fs.read"], &["r5e:Artifact/*", "repo:notes/2.4/*"]));
    assert_eq!(claims.revocation_id, minted.revocation_id);
    // Another artifact, in scope: the token allows asking (admission decides), but grants
    // nothing outright.
    let other = v.authorize(&minted.token, &get("Artifact", "secret"), Utc::now()).unwrap();
    assert!(!other.reads_outright);
    // Nothing in another namespace, whatever the scope says.
    let elsewhere = Request { namespace: "other", ..get("Artifact", "draft") };
    assert!(v.authorize(&minted.token, &elsewhere, Utc::now()).is_err());
    // Out of scope, and not an input: refused.
    assert!(v.authorize(&minted.token, &get("Task", "other"), Utc::now()).is_err());
    // The reads granted outright are for `get` only.
    let list = Request { action: "list", ..get("Task", "") };
    assert!(v.authorize(&minted.token, &list, Utc::now()).is_err());
}

#[test]
fn each_level_of_the_chain_bounds_the_capabilities() {
    let issuer = Issuer::generate();
    let token = issuer.mint(&grant()).unwrap().token;
    let v = issuer.verifier();
    v.authorize(&token, &tool("fs.read"), Utc::now()).unwrap();
    // The Graph allows fs.*, but the session's own level does not allow fs.write.
    let e = v.authorize(&token, &tool("fs.write"), Utc::now()).unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    // notes.write is held by Graph, Node and Task, not by the session.
    assert!(v.authorize(&token, &tool("notes.write"), Utc::now()).is_err());
}

#[test]
fn each_level_of_the_chain_bounds_the_scope() {
    let issuer = Issuer::generate();
    let token = issuer.mint(&grant()).unwrap().token;
    let v = issuer.verifier();
    let now = Utc::now();
    let list = Request { action: "list", ..get("Artifact", "") };
    v.authorize(&token, &list, now).unwrap();
    // The Node and the Task may create Nodes; the session's own level may not.
    let create = Request { action: "create", ..get("Node", "n2") };
    let e = v.authorize(&token, &create, now).unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    // What a Tool call touches: the session may touch notes of 2.4 only.
    let touch = |what| Request { touches: Some(what), ..tool("fs.read") };
    v.authorize(&token, &touch("repo:notes/2.4/changes.md"), now).unwrap();
    assert!(v.authorize(&token, &touch("repo:notes/2.5/changes.md"), now).is_err());
    assert!(v.authorize(&token, &touch("repo:secrets/key"), now).is_err());
    // A level that names no scope at all lets nothing be touched but the reads granted outright.
    let mut g = grant();
    g.chain[1].authority.scope.clear();
    let bare = issuer.mint(&g).unwrap().token;
    v.authorize(&bare, &get("Task", "t"), now).unwrap();
    assert!(v.authorize(&bare, &get("Artifact", "secret"), now).is_err());
    assert!(v.authorize(&bare, &touch("repo:notes/2.4/changes.md"), now).is_err());
    v.authorize(&bare, &tool("fs.read"), now).unwrap();
}

#[test]
fn a_session_may_not_ask_to_delete_or_update() {
    let issuer = Issuer::generate();
    let token = issuer.mint(&grant()).unwrap().token;
    for action in ["delete", "update", "update_status"] {
        let r = Request { action, ..get("Task", "t") };
        assert!(issuer.verifier().authorize(&token, &r, Utc::now()).is_err(), "{action} was allowed");
    }
}

#[test]
fn a_holder_can_narrow_its_token_but_never_widen_it() {
    let issuer = Issuer::generate();
    let token = issuer.mint(&grant()).unwrap().token;
    let parsed = Biscuit::from_base64(&token, issuer.verifier().root).unwrap();
    // Narrowed to reads: a create is refused.
    let narrowed = parsed.append(block!(r#"check if operation("get");"#)).unwrap().to_base64().unwrap();
    let v = issuer.verifier();
    v.authorize(&narrowed, &get("Task", "t"), Utc::now()).unwrap();
    let create = Request { action: "create", ..get("Node", "n2") };
    assert!(v.authorize(&narrowed, &create, Utc::now()).is_err());
    // Claims in an appended block are not believed: no new read right, no other session, no
    // wider scope.
    let widened = parsed
        .append(block!(
            r#"read("Artifact", "team", "secret"); session("team", "admin", "x"); capability("fs.write");
            read("Task", "team", "other"); touches("r5e:Task/other");"#
        ))
        .unwrap()
        .to_base64()
        .unwrap();
    let claims = v.authorize(&widened, &get("Artifact", "secret"), Utc::now()).unwrap();
    assert!(!claims.reads_outright);
    assert_eq!(claims.session, "s1");
    assert!(v.authorize(&widened, &tool("fs.write"), Utc::now()).is_err());
    assert!(v.authorize(&widened, &get("Task", "other"), Utc::now()).is_err());
}

#[test]
fn a_forged_or_tampered_token_is_refused() {
    let issuer = Issuer::generate();
    let token = issuer.mint(&grant()).unwrap().token;
    let forger = Issuer::generate();
    let forged = forger.mint(&grant()).unwrap().token;
    let e = issuer.verifier().authorize(&forged, &get("Task", "t"), Utc::now()).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let mut bytes = token.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(issuer.verifier().authorize(&tampered, &get("Task", "t"), Utc::now()).is_err());
    assert!(issuer.verifier().authorize("not a token", &get("Task", "t"), Utc::now()).is_err());
}

#[test]
fn an_expired_token_is_refused() {
    let issuer = Issuer::generate();
    let mut g = grant();
    g.expires_at = Utc::now() - Span::seconds(1);
    let token = issuer.mint(&g).unwrap().token;
    assert!(issuer.verifier().authorize(&token, &get("Task", "t"), Utc::now()).is_err());
    assert!(issuer.verifier().verify(&token, Utc::now()).is_err());
    // A level's expiry binds too.
    let mut g = grant();
    g.chain[1].authority.expires_at = Some(Utc::now() + Span::minutes(1));
    let token = issuer.mint(&g).unwrap().token;
    issuer.verifier().authorize(&token, &get("Task", "t"), Utc::now()).unwrap();
    assert!(issuer.verifier().authorize(&token, &get("Task", "t"), Utc::now() + Span::minutes(2)).is_err());
}

#[test]
fn a_token_dies_with_its_session() {
    let issuer = Issuer::generate();
    let minted = issuer.mint(&grant()).unwrap();
    let claims = issuer.verifier().authorize(&minted.token, &get("Task", "t"), Utc::now()).unwrap();
    let session = |uid: &str, phase: &str, id: &str| {
        let mut r = domain::Resource::new("AgentSession", Some("team"), "s1", json!({}));
        r.metadata.uid = Some(uid.into());
        r.status = json!({"phase": phase, "credential": {"revocationId": id}});
        r
    };
    claims.check_live(Some(&session("uid-1", "Running", &minted.revocation_id))).unwrap();
    claims.check_live(Some(&session("uid-1", "Reflecting", &minted.revocation_id))).unwrap();
    for (uid, phase, id) in [
        ("uid-1", "Succeeded", minted.revocation_id.as_str()),
        ("uid-2", "Running", minted.revocation_id.as_str()),
        ("uid-1", "Running", "another"),
    ] {
        let e = claims.check_live(Some(&session(uid, phase, id))).unwrap_err();
        assert!(matches!(e, Error::Dead(_)), "{e}");
    }
    assert!(claims.check_live(None).is_err());
}

#[test]
fn keys_are_kept_private_and_tokens_can_be_inspected_and_verified_offline() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.key");
    let a = Issuer::load_or_create(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let b = Issuer::load_or_create(&path).unwrap();
    assert_eq!(a.verifier().public_key(), b.verifier().public_key());
    let minted = a.mint(&grant()).unwrap();
    let offline = Verifier::from_public_key(&a.verifier().public_key()).unwrap();
    let ids = offline.verify(&minted.token, Utc::now()).unwrap();
    assert_eq!(ids.len(), 5, "the root block and one per level");
    assert_eq!(ids[0], minted.revocation_id);
    let text = inspect(&minted.token).unwrap();
    assert!(text.contains("session(\"team\", \"s1\", \"uid-1\")"), "{text}");
    assert!(text.contains("level(\"AgentSession/s1\")"), "{text}");
    std::fs::write(&path, "garbage").unwrap();
    assert!(Issuer::load_or_create(&path).is_err());
}
