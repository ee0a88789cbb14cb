//! Whose word a rule takes. A group, a login name or an email in a token is
//! what its issuer says, and with more than one trusted issuer the same
//! words can come from an issuer whose users control them (a CI issuer whose
//! `groups_claim` maps to something anyone can name). So while the config
//! trusts more than one issuer, every rule that hands out power names the
//! issuers it believes: each `[rule.match]` and `[admin.match]` has
//! `issuer`, a `[deny.match]` that reads groups has it, `[rule.approval]`
//! with `approver_groups` has `approver_issuer`, and `[rule.approval.auto]`
//! has `issuer`. A policy that leaves one out is refused, at the place where
//! the issuer is missing and with the line to write. With one issuer there is
//! nobody else to believe, and nothing needs naming.

use std::ops::Range;

use toml::Spanned;

use super::compiler::Compiler;
use super::raw::{RawApproval, RawAuto, RawMatch, Strings};
use super::Diagnostic;

/// The kind of rule whose `match` table is checked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    /// `[[rule]]`: grants principals.
    Rule,
    /// `[[deny]]`: takes them away.
    Deny,
    /// `[[admin]]`: grants revocation rights.
    Admin,
}

impl Table {
    fn header(self) -> &'static str {
        match self {
            Table::Rule => "[rule.match]",
            Table::Deny => "[deny.match]",
            Table::Admin => "[admin.match]",
        }
    }
}

impl Compiler<'_> {
    /// The issuer names of `field`, each one the config does not know
    /// warned about.
    pub(super) fn issuer_names(
        &mut self,
        field: &str,
        list: &Option<Spanned<Strings>>,
    ) -> Vec<String> {
        let names = self.plain(field, list);
        for item in list.iter().flat_map(|l| l.get_ref()) {
            self.known_issuer(
                item.get_ref(),
                item.span(),
                "this condition never holds here",
            );
        }
        names
    }

    /// Warns, when the config is known, that `name` is none of its issuers
    /// and says what that means (`consequence`).
    pub(super) fn known_issuer(&mut self, name: &str, span: Range<usize>, consequence: &str) {
        let Some(known) = &self.context.issuers else {
            return;
        };
        if known.iter().any(|k| k == name) {
            return;
        }
        // A warning, not an error: one policy may serve several CAs with
        // different issuers, and the rule simply cannot apply here.
        let message = format!(
            "issuer {name:?} is not an [[oidc]] name of the config (known: {}); {consequence}",
            known.join(", ")
        );
        let location = Some(self.locator.at(span));
        self.warnings.push(Diagnostic { location, message });
    }

    /// Refuses a `match` table that reads what an issuer says (groups; for
    /// allow and admin rules also login names and emails) without naming
    /// an issuer, while the config trusts several.
    pub(super) fn name_issuers(&mut self, table: Table, raw: &Option<Spanned<RawMatch>>) {
        // No table: allow and admin rules are refused for that already, and
        // a deny rule without conditions applies to everyone, which is safe.
        let (Some(raw), Some(trusted)) = (raw, self.several_issuers()) else {
            return;
        };
        let m = raw.get_ref();
        if m.issuer.is_some() {
            return;
        }
        let groups = [("groups_any", &m.groups_any), ("groups_all", &m.groups_all)];
        let asserted = [
            ("username", &m.username),
            ("email", &m.email),
            ("email_domain", &m.email_domain),
        ];
        let unnamed = match table {
            // Denying more than meant is safe; only groups, which read the
            // same everywhere, must say whose they are, so that a deny and
            // the rules it guards read alike.
            Table::Deny => groups.iter().find_map(present),
            Table::Rule | Table::Admin => groups.iter().chain(&asserted).find_map(present),
        };
        // A claims condition without an issuer is refused on its own, and
        // an empty table for lacking conditions.
        let Some((key, span)) = unnamed else {
            return;
        };
        let header = table.header();
        let message = format!(
            "{header} names no issuer, and this CA trusts {}: {key} would hold for a token of \
             any of them. Add `issuer = {:?}` to {header}, listing every issuer whose {} count \
             here",
            trusted_list(&trusted),
            [&trusted[0]],
            what(key),
        );
        self.error(span, message);
    }

    /// `approver_issuer` of `[rule.approval]`: whose groups approve. Named
    /// whenever `approver_groups` are while the config trusts several
    /// issuers; `rule_issuers` (the rule's own) are suggested.
    pub(super) fn approver_issuers(
        &mut self,
        approval: &RawApproval,
        rule_issuers: &[String],
    ) -> Vec<String> {
        let issuers = self.issuer_names("approval.approver_issuer", &approval.approver_issuer);
        let groups = approval
            .approver_groups
            .as_ref()
            .filter(|g| !g.get_ref().is_empty());
        match (&approval.approver_issuer, groups) {
            (Some(list), None) => self.error(
                list.span(),
                "approval.approver_issuer says whose approver_groups approve, and there are none \
                 (approver_users name their own issuer, `user@issuer`): remove it or add \
                 approver_groups",
            ),
            (None, Some(groups)) => {
                if let Some(trusted) = self.several_issuers() {
                    let message = format!(
                        "approval.approver_groups names no issuer, and this CA trusts {}: a member \
                         of these groups by a token of any of them could approve. Add \
                         `approver_issuer = {:?}` to [rule.approval], listing the issuers whose \
                         groups approve",
                        trusted_list(&trusted),
                        [suggestion(rule_issuers, &trusted)],
                    );
                    self.error(groups.span(), message);
                }
            }
            _ => {}
        }
        issuers
    }

    /// `issuer` of `[rule.approval.auto]`: whose requesters the policy
    /// approves at once. Named while the config trusts several issuers;
    /// `rule_issuers` (the rule's own) are suggested.
    pub(super) fn auto_issuers(&mut self, auto: &RawAuto, rule_issuers: &[String]) -> Vec<String> {
        let issuers = self.issuer_names("approval.auto.issuer", &auto.issuer);
        if let (None, Some(groups), Some(trusted)) =
            (&auto.issuer, &auto.groups, self.several_issuers())
        {
            let message = format!(
                "approval.auto.groups names no issuer, and this CA trusts {}: a requester in these \
                 groups by a token of any of them would be approved at once. Add `issuer = {:?}` \
                 to [rule.approval.auto], listing the issuers whose groups are approved",
                trusted_list(&trusted),
                [suggestion(rule_issuers, &trusted)],
            );
            self.error(groups.span(), message);
        }
        issuers
    }

    /// The config's issuer names when there is more than one (unknown, as
    /// in `policy check` without a config, counts as one: nothing is asked).
    fn several_issuers(&self) -> Option<Vec<String>> {
        self.context.issuers.clone().filter(|names| names.len() > 1)
    }
}

/// The key and value span of a list the table holds.
fn present<'a>(
    (key, list): &(&'a str, &Option<Spanned<Strings>>),
) -> Option<(&'a str, Range<usize>)> {
    list.as_ref().map(|l| (*key, l.span()))
}

/// What the condition `key` reads, for messages.
fn what(key: &str) -> &'static str {
    match key {
        "username" => "login names",
        "email" | "email_domain" => "emails",
        _ => "groups",
    }
}

/// `2 issuers (corp, github)`.
fn trusted_list(trusted: &[String]) -> String {
    format!("{} issuers ({})", trusted.len(), trusted.join(", "))
}

/// The issuer to suggest: the rule's first, else the config's first.
fn suggestion<'a>(rule_issuers: &'a [String], trusted: &'a [String]) -> &'a String {
    rule_issuers.first().unwrap_or(&trusted[0])
}
