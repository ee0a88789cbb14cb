//! End-to-end KRL versions: every revocation publishes a KRL whose version is
//! above every version published before it, also when two revocations fall
//! in one second and after the database is restored from a backup; and
//! `jit-ssh host sync-krl` refuses a KRL that carries the version in place
//! with other contents, as it refuses an older one. Real tokens from the
//! real IdP, the real CA and `jit-ssh` binaries, real OpenSSH as the judge
//! (`ssh-keygen -Q`); a stand-in HTTP server replays what a network attacker
//! could serve.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ca_client::{nonce_for, CaClient};
use ca_proto::krl::{KrlContents, KRL_SIGNATURE_HEADER, KRL_SIGNATURE_NAMESPACE};
use ca_proto::RevocationResponse;
use e2e::client::sync_krl;
use e2e::http_stub::{HttpStub, Route};
use e2e::openssh::ssh_keygen_revoked as revoked;
use e2e::*;
use serde_json::{json, Value};

const ADMIN_RULE: &str =
    "[[admin]]\nname = \"test-admins\"\n[admin.match]\ngroups_any = [\"sre-leads\"]\n";

/// A KRL as `GET /v1/krl` served it.
struct Krl {
    bytes: Vec<u8>,
    /// The `x-jit-ssh-krl-signature` header, as sent.
    signature: String,
    /// The version in the KRL's header (the `x-jit-ssh-krl-version`
    /// header says the same).
    version: u64,
}

impl Krl {
    /// Written to `dir/name`, for `ssh-keygen -Q`.
    fn save(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.bytes).unwrap();
        path
    }

    /// A stand-in CA that serves this KRL, and `config` (the real CA's
    /// `/v1/config`, naming the keys its signature verifies with).
    fn replayed(&self, config: &[u8]) -> HttpStub {
        HttpStub::start(vec![
            Route::new("/v1/config", config.to_vec()),
            Route::new("/v1/krl", self.bytes.clone()).header(KRL_SIGNATURE_HEADER, &self.signature),
        ])
    }
}

/// A CA trusting the test IdP, with carol (sre-leads) an administrator.
struct World {
    idp: Idp,
    setup: CaSetup,
    ca: Ca,
    dir: tempfile::TempDir,
}

impl World {
    fn start() -> World {
        let idp = Idp::start();
        let setup = CaSetup::builder()
            .issuer("test", &idp.issuer)
            .policy_file("admins.toml", ADMIN_RULE)
            .build();
        let ca = setup.start();
        World {
            idp,
            setup,
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A certificate for a fresh key of `user` (a real login); returns the
    /// certificate's path and serial.
    async fn certify(&self, user: &str, name: &str) -> (PathBuf, String) {
        let (key_path, key) = ssh_keygen(self.dir.path(), name, &["-t", "ed25519"]);
        let tokens = self
            .idp
            .login(user, "jit-ssh", Some(&nonce_for(&key).unwrap()))
            .await
            .unwrap_or_else(|e| panic!("login: {e}\n{}", self.idp.log()));
        let issued = CaClient::new(&self.ca.url, None)
            .unwrap()
            .request_user_certificate(&tokens.id_token, &key, &[], None)
            .await
            .unwrap_or_else(|e| panic!("issue: {e}\n{}", self.ca.process.stderr.text()));
        let cert = write_certificate(self.dir.path(), &key_path, &issued.certificate);
        (cert, issued.serial)
    }

    /// A fresh ID token of carol, the administrator.
    async fn admin_token(&self) -> String {
        self.idp
            .login("carol", "jit-ssh", None)
            .await
            .unwrap_or_else(|e| panic!("login: {e}\n{}", self.idp.log()))
            .id_token
    }

    /// `POST /v1/revocations` of `serial` with the admin `token`.
    async fn revoke(&self, serial: &str, token: &str) -> RevocationResponse {
        let response = http_client()
            .post(format!("{}/v1/revocations", self.ca.url))
            .bearer_auth(token)
            .json(&json!({"serial": serial, "reason": "krl version test"}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /v1/krl` from the CA running now.
    async fn krl(&self) -> Krl {
        let response = http_client()
            .get(format!("{}/v1/krl", self.ca.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .unwrap_or_else(|| panic!("no {name} header"))
                .to_str()
                .unwrap()
                .to_string()
        };
        let signature = header(KRL_SIGNATURE_HEADER);
        let version: u64 = header("x-jit-ssh-krl-version").parse().unwrap();
        let bytes = response.bytes().await.unwrap().to_vec();
        let parsed = ca_proto::krl::parse(&bytes).unwrap();
        assert_eq!(parsed.version, version, "header and KRL disagree");
        Krl {
            bytes,
            signature,
            version,
        }
    }

    /// The CA's `/v1/config`, as a stand-in CA replays it.
    fn config(&self) -> Vec<u8> {
        self.ca.download("/v1/config")
    }

    /// When the CA recorded the revocation of `serial` (Unix seconds).
    fn revoked_at(&self, serial: &str) -> u64 {
        self.setup
            .audit(&[])
            .iter()
            .find(|e| e["event"] == "revoked" && e["serial"] == serial)
            .unwrap_or_else(|| panic!("no revocation of {serial} on record"))["at"]
            .as_u64()
            .unwrap()
    }
}

/// Sleeps until a new second has just begun, so that what follows has
/// most of a second before the clock's second changes.
async fn at_the_start_of_a_second() {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_second = Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
    tokio::time::sleep(Duration::from_secs(1) - into_second + Duration::from_millis(5)).await;
}

/// `sync-krl --json` into `host` from the CA (or stand-in) at `url`; the
/// JSON it printed, or its error text.
fn sync(url: &str, host: &Path) -> Result<Value, String> {
    let (ok, out, err) = sync_krl(url, host, &[]);
    if ok {
        Ok(serde_json::from_str(&out).unwrap())
    } else {
        Err(err)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_revocations_in_one_second_publish_two_increasing_krl_versions() {
    let w = World::start();
    let config = w.config();
    // The case needs both revocations inside one second of the CA's clock; a
    // machine too busy for that gets another try, and the test fails if no
    // try managed it.
    for attempt in 1..=3 {
        let (bob_cert, bob) = w.certify("bob", &format!("bob{attempt}")).await;
        let (alice_cert, alice) = w.certify("alice", &format!("alice{attempt}")).await;
        let tokens = [w.admin_token().await, w.admin_token().await];
        at_the_start_of_a_second().await;
        let first = w.revoke(&bob, &tokens[0]).await;
        let k1 = w.krl().await;
        let second = w.revoke(&alice, &tokens[1]).await;
        let k2 = w.krl().await;

        assert!(
            k2.version > k1.version,
            "attempt {attempt}: two revocations published KRL versions {} then {}",
            k1.version,
            k2.version
        );
        assert!(second.krl_version > first.krl_version);
        assert!(k1.version >= first.krl_version && k2.version >= second.krl_version);
        // OpenSSH reads each as what was revoked by then.
        let p1 = k1.save(w.dir.path(), &format!("first{attempt}.krl"));
        let p2 = k2.save(w.dir.path(), &format!("second{attempt}.krl"));
        assert!(revoked(&p1, &bob_cert) && !revoked(&p1, &alice_cert));
        assert!(revoked(&p2, &bob_cert) && revoked(&p2, &alice_cert));

        // A host holding the second KRL refuses the first, replayed by a
        // stand-in for the CA: it would bring alice's certificate back.
        let host = w.dir.path().join(format!("host{attempt}.krl"));
        sync(&k2.replayed(&config).url, &host).unwrap();
        let err = sync(&k1.replayed(&config).url, &host).unwrap_err();
        assert!(
            err.contains("older than version") && err.contains("left unchanged"),
            "{err}"
        );
        assert_eq!(std::fs::read(&host).unwrap(), k2.bytes);

        if w.revoked_at(&bob) == w.revoked_at(&alice) {
            return;
        }
        eprintln!("attempt {attempt}: the two revocations fell in different seconds");
    }
    panic!("no attempt fitted two revocations into one second");
}

#[test]
fn sync_krl_refuses_the_installed_version_with_other_contents() {
    // A stand-in CA whose KRLs are signed with a key the host trusts (given
    // by --trusted-ca-keys, as hosts do): it can serve any contents under
    // any version.
    let dir = tempfile::tempdir().unwrap();
    let ca_key =
        ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let trusted = dir.path().join("trusted_ca.pub");
    std::fs::write(&trusted, ca_key.public_key().to_openssh().unwrap() + "\n").unwrap();
    let krl = |version: u64, generated: u64, serials: &[u64]| {
        let bytes = KrlContents {
            version,
            generated,
            ca_keys: vec![ca_key.public_key().to_bytes().unwrap()],
            serials: serials.to_vec(),
            ..KrlContents::default()
        }
        .encode();
        let pem = ca_key
            .sign(KRL_SIGNATURE_NAMESPACE, ssh_key::HashAlg::Sha512, &bytes)
            .unwrap()
            .to_pem(ssh_key::LineEnding::LF)
            .unwrap();
        let signature = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
        Krl {
            bytes,
            signature,
            version,
        }
    };
    let host = dir.path().join("jit-ssh.krl");
    let sync = |served: &Krl| {
        let stub = HttpStub::start(vec![Route::new("/v1/krl", served.bytes.clone())
            .header(KRL_SIGNATURE_HEADER, &served.signature)]);
        let (ok, out, err) = sync_krl(
            &stub.url,
            &host,
            &["--trusted-ca-keys", trusted.to_str().unwrap()],
        );
        if ok {
            Ok(serde_json::from_str::<Value>(&out).unwrap())
        } else {
            Err(err)
        }
    };

    let both = krl(7, 100, &[1, 2]);
    assert_eq!(sync(&both).unwrap()["changed"], true);
    // Version 7 again, with serial 2 gone: refused, the file stays.
    let err = sync(&krl(7, 200, &[1])).unwrap_err();
    assert!(
        err.contains("version 7")
            && err.contains("other contents")
            && err.contains("left unchanged"),
        "{err}"
    );
    assert_eq!(std::fs::read(&host).unwrap(), both.bytes);
    // Version 7 again, the same contents generated later: nothing to do.
    assert_eq!(sync(&krl(7, 300, &[1, 2])).unwrap()["changed"], false);
    // A later version may list less (revoked certificates expire).
    let later = krl(8, 400, &[1]);
    assert_eq!(sync(&later).unwrap()["changed"], true);
    assert_eq!(std::fs::read(&host).unwrap(), later.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_publishes_a_krl_version_above_every_one_published() {
    let mut w = World::start();
    let (bob_cert, bob) = w.certify("bob", "bob").await;
    let (alice_cert, alice) = w.certify("alice", "alice").await;
    let token = w.admin_token().await;
    w.revoke(&bob, &token).await;
    let backup = w.dir.path().join("backup.db");
    let (status, out, err) = w.setup.cli(&["backup", "--out", backup.to_str().unwrap()]);
    assert!(status.success(), "{out}\n{err}");

    // After the backup, in a later second: alice's revocation, which the
    // backup lacks, and the KRL listing it that hosts install.
    let token = w.admin_token().await;
    at_the_start_of_a_second().await;
    w.revoke(&alice, &token).await;
    let published = w.krl().await;
    let host = w.dir.path().join("host.krl");
    sync(&w.ca.url, &host).unwrap();
    assert!(revoked(&host, &alice_cert));

    // Restore as docs/deploy.md says: stop, replace the database, start.
    w.ca.process.terminate();
    w.ca.process.wait_exit(Duration::from_secs(20)).unwrap();
    let db = w.setup.data_dir.join("jit-ssh-ca.db");
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            std::fs::remove_file(file).unwrap();
        }
    }
    std::fs::copy(&backup, &db).unwrap();
    w.ca = w.setup.start();

    let restored = w.krl().await;
    assert!(
        restored.version > published.version,
        "the restored CA published version {} after version {}",
        restored.version,
        published.version
    );
    let restored_path = restored.save(w.dir.path(), "restored.krl");
    assert!(revoked(&restored_path, &bob_cert));
    assert!(
        !revoked(&restored_path, &alice_cert),
        "the backup predates alice's revocation"
    );

    // The operator repeats what the backup lacks; the next KRL lists it,
    // under a later version still, and hosts take it.
    let (status, out, err) = w.setup.cli(&[
        "revoke",
        "--serial",
        &alice,
        "--reason",
        "repeated after restore",
    ]);
    assert!(status.success(), "{out}\n{err}");
    let (world, alice_cert) = (&w, &alice_cert);
    let repeated = eventually_async(Duration::from_secs(15), move || async move {
        let krl = world.krl().await;
        if revoked(&krl.save(world.dir.path(), "repeated.krl"), alice_cert) {
            Ok(krl)
        } else {
            Err("the repeated revocation has not reached the KRL")
        }
    })
    .await;
    assert!(repeated.version > restored.version);
    let synced = sync(&w.ca.url, &host).unwrap();
    assert_eq!(synced["version"], json!(repeated.version));
    assert!(revoked(&host, alice_cert) && revoked(&host, &bob_cert));
}
