use super::*;
use biscuit_auth::macros::block;
use chrono::Duration as Span;
use serde_json::json;

fn authority(caps: &[&str]) -> Authority {
    Authority { capabilities: caps.iter().map(|c| c.to_string()).collect(), ..Default::default() }
}

fn grant() -> Grant {
    Grant {
        namespace: "team".into(),
        session: "s1".into(),
        uid: "uid-1".into(),
        chain: vec![
            Level { name: "Graph/g".into(), authority: authority(&["fs.*", "notes.write"]) },
            Level { name: "Node/n".into(), authority: authority(&["fs.read", "notes.write"]) },
            Level { name: "Task/t".into(), authority: authority(&["fs.read", "notes.write"]) },
            Level { name: "AgentSession/s1".into(), authority: authority(&["fs.read"]) },
        ],
        reads: vec![("Artifact".into(), "draft".into()), ("Task".into(), "t".into())],
        expires_at: Utc::now() + Span::hours(1),
    }
}

fn get<'a>(kind: &'a str, name: &'a str) -> Request<'a> {
    Request { action: "get", kind, namespace: "team", name, capability: None }
}

fn tool(capability: &str) -> Request<'_> {
    Request { action: "call_tool", kind: "Tool", namespace: "team", name: "t", capability: Some(capability) }
}

#[test]
fn a_session_reads_its_inputs_outright_and_nothing_else() {
    let issuer = Issuer::generate();
    let minted = issuer.mint(&grant()).unwrap();
    let v = issuer.verifier();
    let claims = v.authorize(&minted.token, &get("Artifact", "draft"), Utc::now()).unwrap();
    assert!(claims.reads_outright);
    assert_eq!((claims.namespace.as_str(), claims.session.as_str(), claims.uid.as_str()), ("team", "s1", "uid-1"));
    assert_eq!(claims.authority, authority(&["fs.read"]));
    assert_eq!(claims.revocation_id, minted.revocation_id);
    // Another artifact: the token allows asking (admission decides), but grants nothing outright.
    let other = v.authorize(&minted.token, &get("Artifact", "secret"), Utc::now()).unwrap();
    assert!(!other.reads_outright);
    // A read right is for `get` of that object in that namespace only.
    let elsewhere = Request { namespace: "other", ..get("Artifact", "draft") };
    assert!(!v.authorize(&minted.token, &elsewhere, Utc::now()).unwrap().reads_outright);
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
    // Claims in an appended block are not believed: no new read right, no other session.
    let widened = parsed
        .append(block!(r#"read("Artifact", "team", "secret"); session("team", "admin", "x"); capability("fs.write");"#))
        .unwrap()
        .to_base64()
        .unwrap();
    let claims = v.authorize(&widened, &get("Artifact", "secret"), Utc::now()).unwrap();
    assert!(!claims.reads_outright);
    assert_eq!(claims.session, "s1");
    assert!(v.authorize(&widened, &tool("fs.write"), Utc::now()).is_err());
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
