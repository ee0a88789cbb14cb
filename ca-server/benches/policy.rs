//! Policy evaluation: one decision against policies of 10, 100 and 1,000
//! rules. Run with `cargo bench -p ca-server --bench policy`; the target and
//! the figures are in docs/benchmarks.md.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;

use ca_server::config::CertSettings;
use ca_server::identity::Identity;
use ca_server::policy::file::Source;
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
}

// In a private module: the macro's generated function has no doc comment.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
