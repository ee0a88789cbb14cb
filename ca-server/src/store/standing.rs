//! A caller's standing: whether an identity may act at all, and whether the
//! ID token it acts with is still unspent.
//!
//! An identity revocation takes every power of the identity, not only new
//! certificates. So the check is made twice: when a caller authenticates
//! ([`check_standing`], for every authenticated call, reads included), and
//! again inside the transaction that records an act paid with an ID token
//! ([`refuse_revoked_bearer`]), so that a revocation committed between the
//! two (by the API, or by `jit-ssh-ca revoke` from another process) still
//! wins. Acts without a token are not refused: an owner revoking their own
//! certificate only takes access away, and the operator on the CA host is
//! whoever may write the database file.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension as _};

use super::schema::sqlite_error;
use super::spent::{SpentToken, WriterDb};
use super::{Actor, NewRequest, RequestAction, RevocationRecord, StoreError};
use crate::identity::IdentityKey;

/// Refuses a caller whose identity is revoked, or whose token was spent.
/// Runs on the serving writer as a read, so it sees every commit the writer
/// has answered for. A token that an act still waiting in the group commit
/// is spending passes: a second change with it is refused as a replay in its
/// own transaction, and a read shows the token's owner only their own view.
pub(super) fn check_standing(
    db: &WriterDb,
    identity: &str,
    key: &IdentityKey,
    token: &SpentToken,
    path: &Path,
) -> Result<(), StoreError> {
    refuse_revoked(&db.conn, identity, Some(key), path)?;
    if db.is_spent(&token.digest) {
        return Err(StoreError::Replayed);
    }
    Ok(())
}

/// A record of an act that names who acted and the ID token it spends, if
/// any: what [`refuse_revoked_bearer`] checks.
pub(super) trait PaidAct {
    /// Who acts.
    fn actor(&self) -> &Actor;
    /// The ID token the act spends; `None` for the owner of a certificate
    /// and the operator on the CA host.
    fn spent_token(&self) -> Option<&SpentToken>;
}

impl PaidAct for RevocationRecord {
    fn actor(&self) -> &Actor {
        &self.actor
    }
    fn spent_token(&self) -> Option<&SpentToken> {
        self.spent_token.as_ref()
    }
}

impl PaidAct for NewRequest {
    fn actor(&self) -> &Actor {
        &self.requester
    }
    fn spent_token(&self) -> Option<&SpentToken> {
        self.spent_token.as_ref()
    }
}

impl PaidAct for RequestAction {
    fn actor(&self) -> &Actor {
        &self.actor
    }
    fn spent_token(&self) -> Option<&SpentToken> {
        self.spent_token.as_ref()
    }
}

/// Refuses, inside the transaction that records it, `act` when it spends an
/// ID token and its actor's identity is revoked.
pub(super) fn refuse_revoked_bearer(
    conn: &Connection,
    act: &impl PaidAct,
    path: &Path,
) -> Result<(), StoreError> {
    match act.spent_token() {
        Some(_) => {
            let actor = act.actor();
            refuse_revoked(conn, &actor.identity, actor.key.as_ref(), path)
        }
        None => Ok(()),
    }
}

/// [`StoreError::RevokedIdentity`] when an unlifted revocation names the
/// display name `identity`, or covers `key`: a ban by display name covers
/// every key seen with it when it was made, a ban by subject its one key.
pub(super) fn refuse_revoked(
    conn: &Connection,
    identity: &str,
    key: Option<&IdentityKey>,
    path: &Path,
) -> Result<(), StoreError> {
    let revoked = conn
        .prepare_cached(
            "SELECT 1 FROM revocations WHERE lifted_at IS NULL AND \
             ((kind = 'identity' AND value = ?1) OR id IN \
              (SELECT revocation_id FROM revoked_identities WHERE issuer = ?2 AND subject = ?3)) \
             LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    identity,
                    key.map(|k| k.issuer.as_str()),
                    key.map(|k| k.subject.as_str())
                ],
                |_| Ok(()),
            )
            .optional()
        })
        .map_err(sqlite_error(path))?;
    match revoked {
        Some(()) => Err(StoreError::RevokedIdentity(identity.to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::fixtures::{action, actor, approve, key_of, new_request, record, token};
    use crate::store::{revoke_offline, RevocationTarget, Store, DATABASE_FILE};

    fn revocation(target: &str, by: &str, token_byte: Option<u8>) -> RevocationRecord {
        RevocationRecord {
            target: RevocationTarget::Identity(target.into()),
            reason: "test".into(),
            actor: actor(by, "admins", 150),
            spent_token: token_byte.map(|byte| token(byte, u64::MAX / 4)),
        }
    }

    #[tokio::test]
    async fn a_caller_stands_while_unrevoked_and_holding_an_unspent_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let check = |who: &str, byte| {
            store.check_standing(who.into(), key_of(who), token(byte, u64::MAX / 4))
        };
        check("alice@corp", 1).await.expect("fresh");
        store.record_issuance(record("1", 1)).await.expect("issued");
        assert!(matches!(
            check("alice@corp", 1).await,
            Err(StoreError::Replayed)
        ));
        // Another spelling of the spent token: what was signed is the same.
        let mut twin = token(1, u64::MAX / 4);
        twin.digest.whole = [0x55; 32];
        assert!(matches!(
            store
                .check_standing("alice@corp".into(), key_of("alice@corp"), twin)
                .await,
            Err(StoreError::Replayed)
        ));
        // Checking spends nothing.
        check("alice@corp", 2).await.expect("unspent");
        check("alice@corp", 2).await.expect("still unspent");
        // A revocation written by another process (the operator's CLI) is
        // seen at once; a lift ends it.
        revoke_offline(&path, &revocation("alice@corp", "operator@local", None)).expect("revoked");
        assert!(matches!(
            check("alice@corp", 2).await,
            Err(StoreError::RevokedIdentity(who)) if who == "alice@corp"
        ));
        check("bob@corp", 3).await.expect("others stand");
        store
            .lift(revocation("alice@corp", "carol@corp", Some(4)))
            .await
            .expect("lifted by another");
        check("alice@corp", 2).await.expect("lifted");
    }

    #[tokio::test]
    async fn a_revocation_committed_after_authentication_still_refuses_the_act() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let store = Store::open(&path, &Metrics::new()).expect("open");
        let pending = store.create_request(new_request(100)).await.expect("asked");
        // carol and bob passed authentication; then both are revoked.
        for who in ["carol@corp", "bob@corp"] {
            revoke_offline(&path, &revocation(who, "operator@local", None)).expect("revoked");
        }
        let paid = |who: &str, byte| {
            let mut act = action(pending.id, who, approve(1), 160);
            act.spent_token = Some(token(byte, u64::MAX / 4));
            act
        };
        let mut asked = new_request(170);
        asked.spent_token = Some(token(20, u64::MAX / 4));
        let refusals = [
            store.change_request(paid("carol@corp", 10)).await.err(),
            store.create_request(asked).await.err(),
            store
                .revoke(revocation("alice@corp", "carol@corp", Some(11)))
                .await
                .err(),
            store
                .lift(revocation("carol@corp", "carol@corp", Some(12)))
                .await
                .err(),
        ];
        for refusal in refusals {
            assert!(
                matches!(refusal, Some(StoreError::RevokedIdentity(_))),
                "{refusal:?}"
            );
        }
        // Nothing was recorded and no token spent.
        let request = store
            .request(pending.id)
            .await
            .expect("read")
            .expect("exists");
        assert!(request.approvals.is_empty());
        for byte in [10, 11, 12, 20] {
            store
                .check_standing(
                    "dave@corp".into(),
                    key_of("dave@corp"),
                    token(byte, u64::MAX / 4),
                )
                .await
                .expect("unspent");
        }
        // Acts without a token are not refused: the operator lifts, and
        // another administrator's token works.
        store
            .lift(revocation("bob@corp", "operator@local", None))
            .await
            .expect("the operator lifts");
        store
            .lift(revocation("carol@corp", "erin@corp", Some(13)))
            .await
            .expect("another admin lifts");
        store
            .change_request(paid("carol@corp", 14))
            .await
            .expect("carol approves again");
    }
}
