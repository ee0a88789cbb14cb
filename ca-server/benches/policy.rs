//! Policy evaluation: one decision against policies of 10, 100 and 1,000
//! rules, and glob matching against an adversarial claim (16 KiB of dashes,
//! the most a token carries, against patterns of many stars), alone and in a
//! decision. Run with `cargo bench -p ca-server --bench policy`; the targets
//! and the figures are in docs/benchmarks.md.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;

use ca_server::config::CertSettings;
use ca_server::identity::Identity;
use ca_server::policy::file::Source;
use ca_server::policy::glob::Glob;
use ca_server::policy::{compile, CertRequest, Decision, Policy as _, PolicyContext};
use criterion::{criterion_main, BenchmarkId, Criterion};

/// `n` rules of mixed kinds: group rules with templates, claim rules, rules
/// with time windows, and a deny rule every 50th; the identity matches a few.
fn policy_text(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        match i % 50 {
            49 => text.push_str(&format!(
                "[[deny]]\nname = \"deny-{i}\"\nprincipals = [\"root\", \"adm-*\"]\n[deny.match]\ngroups_any = [\"contractors-{i}\"]\n"
            )),
            k if k % 5 == 1 => text.push_str(&format!(
                "[[rule]]\nname = \"ci-{i}\"\nprincipals = [\"deploy-{i}\"]\nforce_command = \"/bin/deploy\"\nsource_address = [\"{{client_ip}}\"]\n[rule.match]\nissuer = [\"corp\"]\nclaims = {{ repository = \"acme/app-{i}\", ref = \"refs/heads/*\" }}\n"
            )),
            k if k % 5 == 2 => text.push_str(&format!(
                "[[rule]]\nname = \"window-{i}\"\nprincipals = [\"release-{i}\"]\n[rule.match]\ngroups_any = [\"rm-{i}\"]\n[[rule.window]]\ndays = [\"mon-fri\"]\nfrom = \"09:00\"\nto = \"17:00\"\ntime_zone = \"Europe/Berlin\"\n"
            )),
            _ => text.push_str(&format!(
                "[[rule]]\nname = \"team-{i}\"\nprincipals = [\"{{username}}\", \"team-{i}\"]\nmax_ttl = \"15m\"\n[rule.match]\ngroups_any = [\"team-{i}\", \"other-{i}\"]\n"
            )),
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let context = PolicyContext {
        issuers: Some(vec!["corp".into()]),
        certs: CertSettings::default(),
        reserved: ca_server::policy::reserved::ReservedLogins::default(),
    };
    let mut claims = serde_json::Map::new();
    claims.insert("repository".into(), "acme/app-1".into());
    claims.insert("ref".into(), "refs/heads/main".into());
    let identity = Identity {
        issuer_name: "corp".into(),
        issuer: "https://idp.example.com".into(),
        subject: "user-bob".into(),
        username: "bob".into(),
        email: Some("bob@example.com".into()),
        groups: vec![
            "eng".into(),
            "sre".into(),
            "team-3".into(),
            "team-7".into(),
            "rm-2".into(),
        ],
        claims,
    };
    let request = CertRequest {
        principals: vec![],
        ttl: None,
        client_addr: IpAddr::from([192, 0, 2, 10]),
        approved: Vec::new(),
    };
    // Monday 2026-07-06 12:00 Berlin: the window rules are open.
    let now = 1_783_332_000;
    let mut group = c.benchmark_group("policy evaluation");
    for n in [10, 100, 1000] {
        let set = compile(
            &[Source {
                path: PathBuf::from("bench.toml"),
                text: policy_text(n),
            }],
            &context,
        )
        .unwrap_or_else(|d| panic!("{}", d[0]));
        assert!(matches!(
            set.evaluate(&identity, &request, now),
            Decision::Allow(_)
        ));
        group.bench_with_input(BenchmarkId::from_parameter(n), &set, |b, set| {
            b.iter(|| black_box(set.evaluate(black_box(&identity), black_box(&request), now)))
        });
    }
    group.finish();

    // A run of dashes almost matches `*-*-…-prod` at every split: the input
    // that made the backtracking matcher take time of the fourth power of
    // its length.
    let claim = "-".repeat(16 * 1024);
    let many_stars = |stars: usize| format!("{}prod", "*-".repeat(stars));
    let mut group = c.benchmark_group("glob, 16 KiB adversarial claim, stars");
    for stars in [4, 16, 64] {
        let glob = Glob::new(&many_stars(stars)).unwrap();
        let mut matching = claim.clone();
        matching.push_str("-prod");
        assert!(!glob.matches(&claim) && glob.matches(&matching));
        group.bench_with_input(BenchmarkId::from_parameter(stars), &glob, |b, glob| {
            b.iter(|| black_box(glob.matches(black_box(&matching))))
        });
    }
    group.finish();
    let text = format!(
        "{}[[rule]]\nname = \"ci-workflow\"\nprincipals = [\"deploy\"]\n[rule.match]\nissuer = [\"corp\"]\nclaims = {{ workflow = \"{}\" }}\n",
        policy_text(100),
        many_stars(16)
    );
    let set = compile(
        &[Source {
            path: PathBuf::from("bench.toml"),
            text,
        }],
        &context,
    )
    .unwrap_or_else(|d| panic!("{}", d[0]));
    // A workload: no groups, only the claim, so the claim rule alone grants.
    let mut claims = serde_json::Map::new();
    claims.insert("workflow".into(), format!("{claim}-prod").into());
    let adversarial = Identity {
        groups: Vec::new(),
        claims,
        ..identity.clone()
    };
    let Decision::Allow(grant) = set.evaluate(&adversarial, &request, now) else {
        panic!("the adversarial identity is granted")
    };
    assert_eq!(grant.principals, ["deploy"]);
    c.bench_function(
        "policy evaluation, 100 rules + 16 KiB claim vs 16 stars",
        |b| b.iter(|| black_box(set.evaluate(black_box(&adversarial), black_box(&request), now))),
    );
}

// In a private module: the macro's generated function has no doc comment.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
