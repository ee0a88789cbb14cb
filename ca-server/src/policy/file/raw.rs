//! The policy file format as TOML gives it, before any check: every field
//! keeps its span so a problem can name its line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) rule: Vec<RawAllow>,
    #[serde(default)]
    pub(super) deny: Vec<RawDeny>,
    #[serde(default)]
    pub(super) admin: Vec<RawAdmin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) name: Spanned<String>,
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    #[serde(rename = "match")]
    pub(super) conditions: Option<Spanned<RawMatch>>,
}

pub(super) type Strings = Vec<Spanned<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllow {
    pub(super) name: Spanned<String>,
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    #[serde(rename = "match")]
    pub(super) conditions: Option<Spanned<RawMatch>>,
    pub(super) principals: Spanned<Strings>,
    pub(super) default_ttl: Option<Spanned<String>>,
    pub(super) max_ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) window: Vec<Spanned<RawWindow>>,
    pub(super) extensions: Option<Strings>,
    pub(super) force_command: Option<Spanned<String>>,
    pub(super) source_address: Option<Spanned<Strings>>,
    pub(super) approval: Option<Spanned<RawApproval>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeny {
    pub(super) name: Spanned<String>,
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    #[serde(rename = "match")]
    pub(super) conditions: Option<Spanned<RawMatch>>,
    pub(super) principals: Option<Spanned<Strings>>,
    #[serde(default)]
    pub(super) window: Vec<Spanned<RawWindow>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub(super) issuer: Option<Spanned<Strings>>,
    pub(super) username: Option<Spanned<Strings>>,
    pub(super) email: Option<Spanned<Strings>>,
    pub(super) email_domain: Option<Spanned<Strings>>,
    pub(super) groups_any: Option<Spanned<Strings>>,
    pub(super) groups_all: Option<Spanned<Strings>>,
    pub(super) claims: Option<BTreeMap<String, Spanned<RawClaim>>>,
}

/// A claim condition's value: an integer stands for its decimal string,
/// which is also how an integer claim is matched.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawClaim {
    Bool(bool),
    Integer(i64),
    One(String),
    Many(Vec<RawScalar>),
}

/// One value of a claim condition's list.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawScalar {
    Integer(i64),
    Text(String),
}

impl RawScalar {
    pub(super) fn text(&self) -> String {
        match self {
            RawScalar::Integer(n) => n.to_string(),
            RawScalar::Text(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub(super) days: Option<Spanned<Vec<String>>>,
    pub(super) from: Spanned<String>,
    pub(super) to: Spanned<String>,
    pub(super) time_zone: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    pub(super) approver_groups: Option<Spanned<Strings>>,
    pub(super) approver_users: Option<Spanned<Strings>>,
    pub(super) approver_issuer: Option<Spanned<Strings>>,
    #[serde(default = "one")]
    pub(super) min_approvals: Spanned<u32>,
    pub(super) max_window: Option<Spanned<String>>,
    pub(super) reason_required: Option<bool>,
    pub(super) break_glass: Option<bool>,
    pub(super) auto: Option<Spanned<RawAuto>>,
    pub(super) window_from_first_use: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuto {
    pub(super) issuer: Option<Spanned<Strings>>,
    pub(super) groups: Option<Spanned<Strings>>,
    #[serde(default)]
    pub(super) window: Vec<Spanned<RawWindow>>,
}

pub(super) fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
