//! Certificate restrictions a rule grants with its principals: extensions
//! (an allow-list), `force-command` and `source-address`.
//!
//! When several rules contribute to one certificate, their restrictions
//! combine to the strictest: extensions are intersected, source addresses are
//! intersected, and differing forced commands cannot share a certificate.

use std::net::IpAddr;

/// Extensions a rule gets when it names none: a terminal, and nothing that
/// forwards ports, X11 or the agent, or runs `~/.ssh/rc`.
pub const DEFAULT_RULE_EXTENSIONS: [&str; 1] = ["permit-pty"];

/// Extensions OpenSSH defines; anything else must be a vendor extension
/// (`name@domain`).
pub const KNOWN_EXTENSIONS: [&str; 6] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
    "no-touch-required",
];

/// Checks an extension name from a policy file.
pub fn check_extension(name: &str) -> Result<(), String> {
    if KNOWN_EXTENSIONS.contains(&name) {
        return Ok(());
    }
    let vendor = name.split_once('@').is_some_and(|(n, d)| {
        !n.is_empty() && d.contains('.') && name.chars().all(|c| c.is_ascii_graphic())
    });
    if vendor {
        Ok(())
    } else {
        Err(format!(
            "unknown extension {name:?} (known: {}; vendor extensions look like name@example.com)",
            KNOWN_EXTENSIONS.join(", ")
        ))
    }
}

/// One `source_address` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEntry {
    /// A fixed network.
    Net(Cidr),
    /// `{client_ip}`: the address the request came from, as a single host.
    ClientIp,
}

impl SourceEntry {
    /// Parses `"10.0.0.0/8"`, `"192.0.2.7"`, `"2001:db8::/32"` or `"{client_ip}"`.
    pub fn parse(text: &str) -> Result<SourceEntry, String> {
        if text == "{client_ip}" {
            return Ok(SourceEntry::ClientIp);
        }
        Cidr::parse(text).map(SourceEntry::Net)
    }

    /// The network this entry stands for, given the client's address.
    pub fn resolve(self, client: IpAddr) -> Cidr {
        match self {
            SourceEntry::Net(net) => net,
            SourceEntry::ClientIp => Cidr::host(client),
        }
    }
}

/// An address with a prefix length, its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// One address.
    pub fn host(addr: IpAddr) -> Cidr {
        let addr = addr.to_canonical();
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    /// Parses `addr` or `addr/len`; host bits must be zero, so a typo like
    /// `10.1.2.3/8` is caught rather than silently meaning `10.0.0.0/8`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            format!("invalid source address {text:?} (use CIDR like \"10.0.0.0/8\", an address, or \"{{client_ip}}\")")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix length in {text:?} (0-{max})"))?,
            None => max,
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return Err(format!(
                "source address {text:?} has host bits set; did you mean \"{}/{prefix}\"?",
                cidr.network()
            ));
        }
        if prefix == 0 {
            return Err(format!(
                "source address {text:?} allows every address; leave out source_address instead"
            ));
        }
        Ok(cidr)
    }

    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn mask(width: u8, prefix: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            let ones = u128::MAX << (128 - u32::from(prefix));
            ones >> (128 - u32::from(width))
        }
    }

    fn network(&self) -> IpAddr {
        let (bits, width) = Cidr::bits(self.addr);
        let masked = bits & Cidr::mask(width, self.prefix);
        match self.addr {
            IpAddr::V4(_) => IpAddr::from((masked as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(masked.to_be_bytes()),
        }
    }

    /// Whether `other` lies entirely inside this network.
    pub fn contains(&self, other: &Cidr) -> bool {
        let (a, wa) = Cidr::bits(self.addr);
        let (b, wb) = Cidr::bits(other.addr);
        wa == wb
            && other.prefix >= self.prefix
            && (a & Cidr::mask(wa, self.prefix)) == (b & Cidr::mask(wa, self.prefix))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The addresses in both lists. CIDR blocks either nest or are disjoint, so
/// the intersection is the narrower of every nested pair.
pub fn intersect(a: &[Cidr], b: &[Cidr]) -> Vec<Cidr> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let narrower = if x.contains(y) {
                *y
            } else if y.contains(x) {
                *x
            } else {
                continue;
            };
            if !out.contains(&narrower) {
                out.push(narrower);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> Cidr {
        Cidr::parse(text).expect(text)
    }

    #[test]
    fn parses_and_refuses_table() {
        assert_eq!(c("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(c("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(c("2001:db8::/32").to_string(), "2001:db8::/32");
        for (bad, why) in [
            ("10.1.2.3/8", "host bits"),
            ("10.0.0.0/33", "prefix length"),
            ("0.0.0.0/0", "every address"),
            ("example.com", "invalid source address"),
            ("{client_addr}", "invalid source address"),
        ] {
            let err = Cidr::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(SourceEntry::parse("{client_ip}"), Ok(SourceEntry::ClientIp));
    }

    #[test]
    fn client_ip_becomes_a_single_host() {
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().expect("ip");
        assert_eq!(
            SourceEntry::ClientIp.resolve(mapped).to_string(),
            "192.0.2.9/32"
        );
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(
            SourceEntry::ClientIp.resolve(v6).to_string(),
            "2001:db8::1/128"
        );
    }

    #[test]
    fn intersection_table() {
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["10.0.0.0/8"], &["10.1.0.0/16"], &["10.1.0.0/16"]),
            (&["10.0.0.0/8"], &["192.168.0.0/16"], &[]),
            (
                &["10.0.0.0/8", "192.168.0.0/16"],
                &["192.168.1.0/24", "10.0.0.1"],
                &["10.0.0.1/32", "192.168.1.0/24"],
            ),
            (&["10.0.0.0/8"], &["2001:db8::/32"], &[]),
        ];
        for (a, b, expected) in cases {
            let a: Vec<Cidr> = a.iter().map(|t| c(t)).collect();
            let b: Vec<Cidr> = b.iter().map(|t| c(t)).collect();
            let got: Vec<String> = intersect(&a, &b).iter().map(ToString::to_string).collect();
            assert_eq!(got, *expected);
        }
    }

    #[test]
    fn extension_allow_list() {
        check_extension("permit-pty").expect("known");
        check_extension("login@github.com").expect("vendor");
        assert!(check_extension("permit-pty-forwarding").is_err());
        assert!(check_extension("permit-x11-forwarding").is_err());
    }
}
