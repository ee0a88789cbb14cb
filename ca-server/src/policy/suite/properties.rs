//! Properties that must hold for any generated policy and request, checked
//! against a reference model built straight from the generated rules.

use proptest::prelude::*;

use super::*;

const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
const NAMES: [&str; 5] = ["p0", "p1", "p2", "root", "{username}"];

#[derive(Debug, Clone)]
struct GenRule {
    deny: bool,
    group: usize,
    principals: Vec<usize>,
    max_minutes: u64,
    window: Option<(u8, u8)>,
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        prop::bool::weighted(0.25),
        0..GROUPS.len(),
        prop::collection::vec(0..NAMES.len(), 1..3),
        1u64..60,
        prop::option::of((0u8..23, 1u8..24)),
    )
        .prop_map(|(deny, group, principals, max_minutes, window)| GenRule {
            deny,
            group,
            principals,
            max_minutes,
            window: window.filter(|(a, b)| a != b),
        })
}

fn render(rules: &[GenRule]) -> String {
    let mut text = String::new();
    for (i, r) in rules.iter().enumerate() {
        let principals: Vec<String> = r
            .principals
            .iter()
            .map(|&p| {
                format!(
                    "{:?}",
                    if r.deny && NAMES[p] == "{username}" {
                        "u*"
                    } else {
                        NAMES[p]
                    }
                )
            })
            .collect();
        let kind = if r.deny { "deny" } else { "rule" };
        text.push_str(&format!(
            "[[{kind}]]\nname = \"r{i}\"\nprincipals = [{}]\n",
            principals.join(", ")
        ));
        if !r.deny {
            text.push_str(&format!(
                "max_ttl = \"{}m\"\ndefault_ttl = \"1m\"\n",
                r.max_minutes
            ));
        }
        text.push_str(&format!(
            "[{kind}.match]\ngroups_any = [{:?}]\n",
            GROUPS[r.group]
        ));
        if let Some((from, to)) = r.window {
            text.push_str(&format!("[[{kind}.window]]\nfrom = \"{from:02}:00\"\nto = \"{to:02}:00\"\ntime_zone = \"Europe/Berlin\"\n"));
        }
    }
    // Always one rule, so the policy is never empty.
    text.push_str("[[rule]]\nname = \"base\"\nprincipals = [\"base\"]\nmax_ttl = \"60m\"\n[rule.match]\ngroups_any = [\"g0\"]\n");
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn certificates_carry_only_granted_principals_within_the_smallest_max_ttl_and_deny_wins(
        rules in prop::collection::vec(gen_rule(), 0..8),
        groups in prop::collection::vec(0..GROUPS.len(), 0..3),
        asked in prop::collection::vec(0..NAMES.len(), 0..3),
        ttl_minutes in prop::option::of(1u64..120),
        hour in 0u64..168,
    ) {
        let text = render(&rules);
        let Ok(set) = compile(&[Source { path: "gen.toml".into(), text: text.clone() }], &context()) else {
            // Generated policies may be refused (e.g. a deny shadowing a rule).
            return Ok(());
        };
        let user_groups: Vec<&str> = groups.iter().map(|&g| GROUPS[g]).collect();
        let who = person("u1", &user_groups, json!({}));
        let principals: Vec<String> = {
            let mut p: Vec<String> = asked.iter().map(|&p| NAMES[p].replace("{username}", "u1")).collect();
            p.sort();
            p.dedup();
            p
        };
        let request = CertRequest {
            principals: principals.clone(),
            ttl: ttl_minutes.map(|m| Duration::from_secs(m * 60)),
            client_addr: IpAddr::from([127, 0, 0, 1]),
            approved: Vec::new(),
        };
        let now = MONDAY_NOON_BERLIN + hour * 3600;
        let Decision::Allow(grant) = set.evaluate(&who, &request, now) else { return Ok(()) };
        prop_assert!(!grant.principals.is_empty());
        if !principals.is_empty() {
            prop_assert_eq!(&grant.principals, &principals, "exactly what was asked");
        }
        // Reference model, straight from the generated rules.
        let applies = |r: &GenRule| {
            user_groups.contains(&GROUPS[r.group])
                && r.window.is_none_or(|(from, to)| {
                    window::TimeWindow::parse(&[], &format!("{from:02}:00"), &format!("{to:02}:00"), "Europe/Berlin")
                        .unwrap()
                        .end_if_open(now)
                        .is_some()
                })
        };
        let grants = |r: &GenRule, p: &str| r.principals.iter().any(|&i| NAMES[i].replace("{username}", "u1") == p);
        let denies = |r: &GenRule, p: &str| r.principals.iter().any(|&i| {
            let pattern = NAMES[i];
            if pattern == "{username}" { p.starts_with('u') } else { pattern == p }
        });
        for p in &grant.principals {
            let granting: Vec<u64> = rules
                .iter()
                .filter(|r| !r.deny && applies(r) && grants(r, p))
                .map(|r| r.max_minutes)
                .chain((p == "base" && user_groups.contains(&"g0")).then_some(60))
                .collect();
            prop_assert!(!granting.is_empty(), "principal {} granted by no rule\n{}", p, text);
            let smallest = granting.iter().min().copied().unwrap_or(60);
            prop_assert!(grant.ttl <= Duration::from_secs(smallest * 60), "ttl {:?} beyond max_ttl {}m for {}\n{}", grant.ttl, smallest, p, text);
            let denied_by = rules.iter().any(|r| r.deny && applies(r) && denies(r, p));
            prop_assert!(!denied_by, "principal {} was denied by a deny rule but granted\n{}", p, text);
        }
    }
}
