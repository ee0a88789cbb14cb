//! The live policy: an immutable [`PolicySet`] behind an [`ArcSwap`], replaced
//! whole when the files change or on SIGHUP.
//!
//! Each decision loads one snapshot and uses it throughout, so a request in
//! flight never sees half of an old and half of a new policy. A reload that
//! fails (syntax, validation, unreadable directory) is refused with logged
//! errors and the last good policy stays in force; there is never an empty
//! policy and never a crash.
//!
//! Changes are found by polling: every [`POLL_INTERVAL`] the directory is
//! read and hashed. That costs a few kilobytes of reads per interval, needs
//! no extra dependency, and, unlike inotify, also sees edits on network file
//! systems, bind mounts and Kubernetes ConfigMap symlink swaps.
//!
//! A poll takes a change only once the files have held still: the same
//! names, sizes, modification times and contents at two polls in a row. A
//! file rewritten in place can be caught half-written at a line boundary, and
//! half a policy file is often valid TOML that means something else (an
//! empty deny file denies nothing; an approval rule cut before its
//! `[rule.approval]` grants freely). Files replaced atomically (write, then
//! rename; docs/policies.md) are never seen half-written; the wait covers
//! editors and tools that do not. SIGHUP is the admin saying the edit is
//! done, so it takes the files as they are at once.

use crate::metrics::Metrics;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::engine::PolicySet;
use super::file::{compile, read_dir, Diagnostic, Fingerprint, PolicyContext, Source};
use super::{CertRequest, Decision, Policy};
use crate::identity::Identity;
use crate::UnixTime;

/// How often the policy directory is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The files are as last read.
    Unchanged,
    /// The files changed since the last poll; they are taken once they are
    /// found unchanged at the next one.
    Settling,
    /// A new policy is in force.
    Reloaded {
        /// Allow plus deny rules in it.
        rules: usize,
    },
    /// The files are broken; the previous policy stays.
    Refused(Vec<Diagnostic>),
}

/// The server's policy, swappable while requests are evaluated.
pub struct ReloadablePolicy {
    current: ArcSwap<PolicySet>,
    dir: PathBuf,
    context: PolicyContext,
    seen: Mutex<Seen>,
}

/// What the polls have seen of the files.
struct Seen {
    /// Fingerprint of the files last attempted, good or bad, so a broken edit
    /// is reported once rather than every interval.
    attempted: Fingerprint,
    /// Fingerprint of a change seen at the last poll and not attempted yet:
    /// attempted when the next poll sees the same.
    pending: Option<Fingerprint>,
}

impl ReloadablePolicy {
    /// Loads `dir`; fails (listing every problem) unless the policy is valid.
    pub fn load(dir: &Path, context: PolicyContext) -> Result<Self, Vec<Diagnostic>> {
        let (sources, fingerprint) = stable_read(dir)?;
        let set = compile(&sources, &context)?;
        for warning in set.warnings() {
            tracing::warn!("policy: {warning}");
        }
        Ok(ReloadablePolicy {
            current: ArcSwap::from_pointee(set),
            dir: dir.to_path_buf(),
            context,
            seen: Mutex::new(Seen {
                attempted: fingerprint,
                pending: None,
            }),
        })
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// The directory it reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory. A poll (`force` false) takes a change only
    /// when the previous poll saw the files exactly as they are now; with
    /// `force` (SIGHUP), the files are taken at once, even if they look
    /// unchanged (and then a still-broken policy is reported again).
    pub fn reload(&self, force: bool) -> ReloadOutcome {
        let (sources, fingerprint) = match stable_read(&self.dir) {
            Ok(read) => read,
            Err(diagnostics) => return ReloadOutcome::Refused(diagnostics),
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !force {
                if seen.attempted == fingerprint {
                    seen.pending = None;
                    return ReloadOutcome::Unchanged;
                }
                if seen.pending != Some(fingerprint) {
                    seen.pending = Some(fingerprint);
                    return ReloadOutcome::Settling;
                }
            }
            seen.attempted = fingerprint;
            seen.pending = None;
        }
        match compile(&sources, &self.context) {
            Ok(set) => {
                let rules = set.allow_rules().len() + set.deny_rules().len();
                for warning in set.warnings() {
                    tracing::warn!("policy: {warning}");
                }
                self.current.store(Arc::new(set));
                ReloadOutcome::Reloaded { rules }
            }
            Err(diagnostics) => ReloadOutcome::Refused(diagnostics),
        }
    }

    /// Reloads, logs the outcome and counts it in `metrics`.
    pub fn reload_and_log(&self, force: bool, metrics: &Metrics) {
        match self.reload(force) {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Settling => tracing::debug!(
                dir = %self.dir.display(),
                "policy files changed; taken once they are unchanged at the next poll"
            ),
            ReloadOutcome::Reloaded { rules } => {
                metrics.policy_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(dir = %self.dir.display(), rules, "policy reloaded")
            }
            ReloadOutcome::Refused(diagnostics) => {
                metrics.policy_reloads.with_label_values(&["error"]).inc();
                for d in &diagnostics {
                    tracing::error!("policy reload refused: {d}");
                }
                tracing::error!(
                    errors = diagnostics.len(),
                    "policy reload refused; the last good policy stays in force"
                );
            }
        }
    }
}

/// Reads until two consecutive reads agree, so a multi-file change that is
/// being written while it is read is not taken half-way.
fn stable_read(dir: &Path) -> Result<(Vec<Source>, Fingerprint), Vec<Diagnostic>> {
    let mut previous = read_dir(dir)?;
    for _ in 0..5 {
        let again = read_dir(dir)?;
        if again.1 == previous.1 {
            return Ok(again);
        }
        previous = again;
    }
    Ok(previous)
}

impl Policy for ReloadablePolicy {
    fn evaluate(&self, identity: &Identity, request: &CertRequest, now: UnixTime) -> Decision {
        // One snapshot for the whole decision.
        let set = self.current.load();
        set.evaluate(identity, request, now)
    }

    fn admin(&self, identity: &Identity) -> Option<String> {
        self.current.load().admin(identity)
    }

    fn access_terms(
        &self,
        identity: &Identity,
        principals: &[String],
        now: UnixTime,
    ) -> Result<super::AccessTerms, String> {
        self.current.load().access_terms(identity, principals, now)
    }

    fn approval_rights(&self, approver: &Identity, rules: &[String]) -> Option<u32> {
        self.current.load().approval_rights(approver, rules)
    }

    fn approver_terms(
        &self,
        approver: &Identity,
        rules: &[String],
    ) -> Option<(u32, Vec<Option<super::RuleRequirement>>)> {
        // One snapshot: who may approve and what they approve under.
        Policy::approver_terms(&**self.current.load(), approver, rules)
    }
}

/// Reloads `policy` on SIGHUP and whenever its files change, until the
/// runtime stops.
pub fn spawn_watcher(policy: Arc<ReloadablePolicy>, interval: Duration, metrics: Metrics) {
    tokio::spawn(async move {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; policy reloads only on file changes");
                None
            }
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let force = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    tracing::info!("SIGHUP: reloading policy");
                    true
                }
            };
            let (policy, metrics) = (policy.clone(), metrics.clone());
            let _ =
                tokio::task::spawn_blocking(move || policy.reload_and_log(force, &metrics)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::config::CertSettings;

    fn context() -> PolicyContext {
        PolicyContext {
            issuers: Some(vec!["corp".into()]),
            certs: CertSettings::default(),
            reserved: crate::policy::reserved::ReservedLogins::default(),
        }
    }

    fn identity() -> Identity {
        Identity {
            issuer_name: "corp".into(),
            issuer: "https://idp".into(),
            subject: "u".into(),
            username: "alice".into(),
            email: None,
            groups: vec!["eng".into()],
            claims: Default::default(),
        }
    }

    /// Version `v` of a two-file policy: each file grants one principal
    /// tagged with `v`, so a decision mixing versions is visible.
    fn write_version(dir: &Path, v: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        for part in ["a", "b"] {
            std::fs::write(
                dir.join(format!("{part}.toml")),
                format!(
                    "[[rule]]\nname = \"{part}-{v}\"\nprincipals = [\"{part}{v}\"]\nmax_ttl = \"{}m\"\n[rule.match]\nissuer = [\"corp\"]\n",
                    if v == "1" { 5 } else { 7 }
                ),
            )
            .expect("write");
        }
    }

    fn swap_link(root: &Path, target: &str) {
        let tmp = root.join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(root.join(target), &tmp).expect("symlink");
        std::fs::rename(&tmp, root.join("current")).expect("atomic rename");
    }

    #[test]
    fn hot_reload_under_load_never_fails_or_mixes_versions() {
        let root = tempfile::tempdir().expect("tempdir");
        write_version(&root.path().join("v1"), "1");
        write_version(&root.path().join("v2"), "2");
        let broken = root.path().join("broken");
        std::fs::create_dir_all(&broken).expect("mkdir");
        std::fs::write(
            broken.join("a.toml"),
            "[[rule]]\nname = \"x\"\nprincipals = [\"Root\"]\n",
        )
        .expect("write");
        swap_link(root.path(), "v1");
        let policy = Arc::new(
            ReloadablePolicy::load(&root.path().join("current"), context()).expect("loads"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let decisions = Arc::new(AtomicUsize::new(0));
        let seen_v2 = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (policy, stop, decisions, seen_v2) = (
                    policy.clone(),
                    stop.clone(),
                    decisions.clone(),
                    seen_v2.clone(),
                );
                std::thread::spawn(move || {
                    let request = CertRequest {
                        principals: vec![],
                        ttl: Some(Duration::from_secs(3600)),
                        client_addr: [127, 0, 0, 1].into(),
                        approved: Vec::new(),
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let Decision::Allow(grant) =
                            policy.evaluate(&identity(), &request, 1_800_000_000)
                        else {
                            panic!("a request failed during reload");
                        };
                        let consistent = (grant.principals == ["a1", "b1"]
                            && grant.ttl == Duration::from_secs(300))
                            || (grant.principals == ["a2", "b2"]
                                && grant.ttl == Duration::from_secs(420));
                        assert!(consistent, "mixed policy seen: {grant:?}");
                        if grant.principals[0] == "a2" {
                            seen_v2.store(true, Ordering::Relaxed);
                        }
                        decisions.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for round in 0..60 {
            let target = match round % 3 {
                0 => "v2",
                1 => "broken",
                _ => "v1",
            };
            swap_link(root.path(), target);
            // The first poll sees the change; the second, finding it held
            // still, takes it.
            let first = policy.reload(false);
            assert!(matches!(first, ReloadOutcome::Settling), "{first:?}");
            let outcome = policy.reload(false);
            if target == "broken" {
                assert!(matches!(outcome, ReloadOutcome::Refused(_)), "{outcome:?}");
            } else {
                assert!(!matches!(outcome, ReloadOutcome::Refused(_)), "{outcome:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("no worker panicked");
        }
        assert!(seen_v2.load(Ordering::Relaxed), "the swaps were never seen");
        assert!(decisions.load(Ordering::Relaxed) > 100);
        // After a refused reload the last good policy is still in force.
        swap_link(root.path(), "broken");
        assert!(matches!(policy.reload(false), ReloadOutcome::Settling));
        assert!(matches!(policy.reload(false), ReloadOutcome::Refused(_)));
        assert_eq!(policy.current().allow_rules()[0].name, "a-1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sighup_reloads_at_once() {
        // Registered first, so the signal can never hit the default action.
        let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("SIGHUP handler");
        let root = tempfile::tempdir().expect("tempdir");
        write_version(root.path(), "1");
        let policy = Arc::new(ReloadablePolicy::load(root.path(), context()).expect("loads"));
        // An interval far longer than the test: only SIGHUP can reload.
        spawn_watcher(policy.clone(), Duration::from_secs(3600), Metrics::new());
        tokio::time::sleep(Duration::from_millis(200)).await;
        write_version(root.path(), "2");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while policy.current().allow_rules()[0].name != "a-2" {
            assert!(
                std::time::Instant::now() < deadline,
                "SIGHUP did not reload"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn unchanged_files_are_not_reparsed_and_force_reports_again() {
        let root = tempfile::tempdir().expect("tempdir");
        write_version(root.path(), "1");
        let policy = ReloadablePolicy::load(root.path(), context()).expect("loads");
        assert!(matches!(policy.reload(false), ReloadOutcome::Unchanged));
        std::fs::write(root.path().join("b.toml"), "[[rule]]\nname = ").expect("write");
        assert!(matches!(policy.reload(false), ReloadOutcome::Settling));
        assert!(matches!(policy.reload(false), ReloadOutcome::Refused(_)));
        assert!(matches!(policy.reload(false), ReloadOutcome::Unchanged));
        assert!(matches!(policy.reload(true), ReloadOutcome::Refused(_)));
        std::fs::remove_file(root.path().join("a.toml")).expect("rm");
        std::fs::remove_file(root.path().join("b.toml")).expect("rm");
        let ReloadOutcome::Refused(d) = policy.reload(false) else {
            panic!("empty dir must be refused")
        };
        assert!(d[0].message.contains("no *.toml"), "{}", d[0]);
        assert_eq!(policy.current().allow_rules().len(), 2);
    }

    fn request(principals: &[&str]) -> CertRequest {
        CertRequest {
            principals: principals.iter().map(|p| p.to_string()).collect(),
            ttl: None,
            client_addr: [127, 0, 0, 1].into(),
            approved: Vec::new(),
        }
    }

    fn in_groups(groups: &[&str]) -> Identity {
        Identity {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..identity()
        }
    }

    const ENG: &str = "[[rule]]\nname = \"eng\"\nprincipals = [\"{username}\", \"deploy\"]\n\
        [rule.match]\nissuer = [\"corp\"]\ngroups_any = [\"eng\"]\n";
    const DENY: &str = "[[deny]]\nname = \"contractors-never-deploy\"\nprincipals = [\"deploy\"]\n\
        [deny.match]\nissuer = [\"corp\"]\ngroups_any = [\"contractors\"]\n";
    const SRE_ROOT_CUT: &str = "[[rule]]\nname = \"sre-root\"\nprincipals = [\"root\"]\n\
        [rule.match]\nissuer = [\"corp\"]\ngroups_any = [\"sre\"]\n";
    const SRE_ROOT_APPROVAL: &str = "[rule.approval]\napprover_groups = [\"sre-leads\"]\n\
        approver_issuer = [\"corp\"]\n";

    /// Issue 17 item 6: a file rewritten in place and caught half-written is
    /// valid TOML that means something else. Polls take only files that held
    /// still across two polls, so the half file is never in force.
    #[test]
    fn a_half_written_file_is_never_taken() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path();
        std::fs::write(dir.join("10-eng.toml"), ENG).expect("write");
        std::fs::write(dir.join("90-deny.toml"), DENY).expect("write");
        let policy = ReloadablePolicy::load(dir, context()).expect("loads");
        let contractor = in_groups(&["eng", "contractors"]);
        let denied = |policy: &ReloadablePolicy| {
            matches!(
                policy.evaluate(&contractor, &request(&["deploy"]), 1_800_000_000),
                Decision::Deny(_)
            )
        };
        assert!(denied(&policy));

        // The deny file truncated by an in-place rewrite: "0 deny rules".
        std::fs::write(dir.join("90-deny.toml"), "").expect("truncate");
        assert!(matches!(policy.reload(false), ReloadOutcome::Settling));
        assert!(denied(&policy), "the empty deny file was taken");
        // The rest of it arrives before the next poll: it is a change again,
        // so it waits one more poll, and then the complete file is in force.
        std::fs::write(
            dir.join("90-deny.toml"),
            DENY.replace("never-deploy", "no-deploy"),
        )
        .expect("write");
        assert!(matches!(policy.reload(false), ReloadOutcome::Settling));
        assert!(denied(&policy));
        assert!(matches!(
            policy.reload(false),
            ReloadOutcome::Reloaded { rules: 2 }
        ));
        assert!(denied(&policy));
        assert_eq!(
            policy.current().deny_rules()[0].name,
            "contractors-no-deploy"
        );

        // An approval rule cut before its `[rule.approval]` would grant root
        // with no approval.
        let sre = in_groups(&["sre"]);
        std::fs::write(dir.join("20-sre.toml"), SRE_ROOT_CUT).expect("write");
        assert!(matches!(policy.reload(false), ReloadOutcome::Settling));
        std::fs::write(
            dir.join("20-sre.toml"),
            format!("{SRE_ROOT_CUT}{SRE_ROOT_APPROVAL}"),
        )
        .expect("write");
        assert!(matches!(policy.reload(false), ReloadOutcome::Settling));
        assert!(
            matches!(
                policy.evaluate(&sre, &request(&["root"]), 1_800_000_000),
                Decision::Deny(_)
            ),
            "root was granted without approval from a half-written file"
        );
        assert!(matches!(
            policy.reload(false),
            ReloadOutcome::Reloaded { .. }
        ));
        let set = policy.current();
        let rule = set
            .allow_rules()
            .iter()
            .find(|r| r.name == "sre-root")
            .expect("the complete rule is in force");
        assert!(rule.approval.is_some());
        assert!(matches!(
            policy.evaluate(&sre, &request(&["root"]), 1_800_000_000),
            Decision::Deny(_)
        ));
        // Held still: nothing more to take.
        assert!(matches!(policy.reload(false), ReloadOutcome::Unchanged));
    }

    /// SIGHUP is the admin saying the edit is done: it takes the files at
    /// once, without waiting for a second look.
    #[test]
    fn a_forced_reload_takes_the_files_at_once() {
        let root = tempfile::tempdir().expect("tempdir");
        write_version(root.path(), "1");
        let policy = ReloadablePolicy::load(root.path(), context()).expect("loads");
        write_version(root.path(), "2");
        assert!(matches!(
            policy.reload(true),
            ReloadOutcome::Reloaded { rules: 2 }
        ));
        assert_eq!(policy.current().allow_rules()[0].name, "a-2");
        assert!(matches!(policy.reload(false), ReloadOutcome::Unchanged));
    }
}
