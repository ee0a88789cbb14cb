//! Records the store's unit tests share.

use std::path::Path;

use rusqlite::Connection;

use super::schema::MIGRATIONS;
use super::{
    Actor, IssuanceRecord, NewRequest, NonceBinding, RequestAction, RequestChange,
    RevocationRecord, RevocationTarget, SpentToken,
};
use crate::identity::IdentityKey;
use crate::oidc::TokenDigest;
use crate::UnixTime;

/// The key of the one person these tests show as `identity` (`user-alice`
/// for `alice@corp`, as the test IdP's `sub`s).
pub(super) fn key_of(identity: &str) -> IdentityKey {
    let user = identity.split('@').next().unwrap_or(identity);
    IdentityKey {
        issuer: "https://corp.example".into(),
        subject: format!("user-{user}"),
    }
}

/// `identity` (with its key, [`key_of`]) acting from 127.0.0.1 under
/// `rule` at `at`.
pub(super) fn actor(identity: &str, rule: &str, at: UnixTime) -> Actor {
    Actor {
        identity: identity.into(),
        key: Some(key_of(identity)),
        issuer: "corp".into(),
        client_addr: "127.0.0.1".into(),
        rules: vec![rule.into()],
        at,
    }
}

pub(super) fn record(serial: &str, digest: u8) -> IssuanceRecord {
    IssuanceRecord {
        actor: actor("alice@corp", "builtin-username", 160),
        serial: serial.into(),
        key_id: format!("jit-ssh user=alice issuer=corp serial={serial}"),
        principals: vec!["alice".into()],
        valid_after: 100,
        valid_before: 400,
        key_fingerprint: "SHA256:abc".into(),
        certificate: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
        spent_token: token(digest, u64::MAX / 4),
        request_ids: Vec::new(),
        nonce_binding: NonceBinding::NotRequired,
    }
}

/// [`record`] issued to `identity`, with its key ([`key_of`]).
pub(super) fn record_as(serial: &str, digest: u8, identity: &str) -> IssuanceRecord {
    let mut r = record(serial, digest);
    r.actor.identity = identity.into();
    r.actor.key = Some(key_of(identity));
    r
}

/// carol, an administrator under rule `admins`, revoking or lifting
/// `target` at `at`.
pub(super) fn revocation(target: RevocationTarget, at: UnixTime) -> RevocationRecord {
    RevocationRecord {
        target,
        reason: "test".into(),
        actor: actor("carol@corp", "admins", at),
        spent_token: None,
    }
}

pub(super) fn new_request(at: UnixTime) -> NewRequest {
    NewRequest {
        requester: actor("bob@corp", "sre-root-with-approval", at),
        principals: vec!["root".into()],
        reason: "INC-1234: disk full".into(),
        window_secs: 1800,
        expires_at: at + 3600,
        spent_token: Some(token(9, u64::MAX / 4)),
        approval: None,
        starts_at: None,
        from_first_use: false,
        approved_under: Vec::new(),
    }
}

pub(super) fn action(id: u64, who: &str, change: RequestChange, at: UnixTime) -> RequestAction {
    RequestAction {
        id,
        change,
        actor: actor(who, "sre-root-with-approval", at),
        spent_token: None,
    }
}

pub(super) fn approve(required: u32) -> RequestChange {
    RequestChange::Approve {
        required,
        comment: "ok".into(),
        seen: Some(Vec::new()),
        now: Vec::new(),
    }
}

/// A token whose signed digest is `byte` repeated (its whole-token digest
/// starts with `byte ^ 0x80`, so no fixture's two digests meet), expiring
/// at `expires_at`.
pub(super) fn token(byte: u8, expires_at: UnixTime) -> SpentToken {
    let mut whole = [byte; 32];
    whole[0] ^= 0x80;
    SpentToken {
        digest: TokenDigest {
            signed: [byte; 32],
            whole,
        },
        expires_at,
    }
}

/// A database at `path` as jit-ssh-ca left it after its first `version`
/// migrations, for tests of the ones after (0600, as the CA makes it).
pub(super) fn database_at_version(path: &Path, version: usize) -> Connection {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create 0600");
    let conn = Connection::open(path).expect("open");
    for migration in &MIGRATIONS[..version] {
        conn.execute_batch(migration).expect("migrate");
    }
    conn.pragma_update(None, "user_version", version)
        .expect("version");
    conn
}
