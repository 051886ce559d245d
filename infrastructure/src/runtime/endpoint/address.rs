//! Which addresses a registered API may be reached at. Berth makes the requests, from
//! inside the installation's network, for whoever registered the entry: without a rule,
//! an entry with `base_url: http://169.254.169.254/` would read the cloud's metadata
//! service, and one with `http://127.0.0.1:5432/` would probe Berth's own database. So
//! loopback, private, link-local and other non-public addresses are refused unless the
//! administrator lists their network, and the rule is applied to every address a name
//! resolves to, at connection time (a name cannot resolve to a public address when
//! checked and a private one when connected).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The networks beyond the public internet that registered APIs may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the address is not a public address, and registered APIs and remote servers may reach \
     only public addresses and the networks the administrator allows \
     (`upstream_allowed_networks`)"
)]
pub struct Refused {
    /// The address.
    pub address: IpAddr,
}

impl AddressPolicy {
    /// Public addresses, and `allowed` (CIDR networks such as `10.1.0.0/16` or
    /// `127.0.0.1/32`).
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Parses the administrator's list of networks; the error names the bad entry.
    pub fn parse(allowed: &[String]) -> Result<Self, String> {
        allowed
            .iter()
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{n}` is not a network (`10.0.0.0/8`) or an address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// Whether a request may go to `address`.
    pub fn check(&self, address: IpAddr) -> Result<(), Refused> {
        let address = canonical(address);
        if is_public(address) || self.allowed.iter().any(|n| n.contains(&address)) {
            Ok(())
        } else {
            Err(Refused { address })
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// Globally routable: not loopback, private, shared, link-local, unspecified, multicast,
/// broadcast, documentation, benchmarking or reserved, nor their IPv6 counterparts.
fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let first = segments[0];
            // `::a.b.c.d` (IPv4-compatible), 6to4, Teredo and the other 2001::/23
            // assignments, and site-local: ways to an IPv4 address or an inner network.
            let tunnels = segments[..6].iter().all(|s| *s == 0)
                || first == 0x2002
                || (first == 0x2001 && segments[1] < 0x0200)
                || (first & 0xffc0) == 0xfec0;
            !(tunnels
                || v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 to IPv4
        }
    }
}

/// Resolves names with the system's resolver and keeps only the addresses the policy
/// allows: a name with none left fails to connect, saying why.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// A resolver applying `policy`.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(refused)) => Err(Box::new(refused) as Box<_>),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn only_public_addresses_pass_unless_their_network_is_allowed() {
        let policy = AddressPolicy::default();
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(policy.check(ip(public)).is_ok(), "{public}");
        }
        for inner in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "fd00::1",
            "fe80::1",
            "::",
            "224.0.0.1",
            "::127.0.0.1",
            "2002:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
        ] {
            assert!(policy.check(ip(inner)).is_err(), "{inner}");
        }
        let policy = AddressPolicy::parse(&["127.0.0.1".into(), "10.1.0.0/16".into()])
            .expect("valid networks");
        assert!(policy.check(ip("127.0.0.1")).is_ok());
        assert!(policy.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(policy.check(ip("10.1.200.7")).is_ok());
        assert!(policy.check(ip("10.2.0.1")).is_err());
        assert!(policy.check(ip("127.0.0.2")).is_err());
        assert!(AddressPolicy::parse(&["ten.0.0.0/8".into()]).is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_refused_addresses_does_not_resolve() {
        let resolver = GuardedResolver::new(Arc::new(AddressPolicy::default()));
        let name: Name = "localhost".parse().expect("a name");
        let refused = resolver.resolve(name).await;
        let error = refused.err().expect("localhost is refused").to_string();
        assert!(error.contains("not a public address"), "{error}");

        let allowing = GuardedResolver::new(Arc::new(
            AddressPolicy::parse(&["127.0.0.0/8".into(), "::1".into()]).expect("valid"),
        ));
        let name: Name = "localhost".parse().expect("a name");
        let found: Vec<SocketAddr> = allowing.resolve(name).await.expect("allowed").collect();
        assert!(!found.is_empty());
    }
}
