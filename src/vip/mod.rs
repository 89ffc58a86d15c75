//! `builtin:vip`: the virtual IP done inside pairbeatd, without forking an agent.
//! The address is added and removed over rtnetlink; the moment it is up, and
//! `arp_count - 1` times more every `arp_interval`, it is announced: an IPv4
//! gratuitous ARP (an RFC 5227 announcement), or an IPv6 unsolicited neighbour
//! advertisement with the override flag, so that clients and switches learn the
//! new owner's MAC at once. A monitor reads the address back from netlink; a
//! monitor that re-asserts the group after a split brain announces it again.
//!
//! Its parameters are named as `ocf:heartbeat:IPaddr2`'s (`ip`, `cidr_netmask`,
//! `nic`, `broadcast`, `label`, `arp_count`, `arp_interval`), with the same
//! defaults, so a resource moves between the two by changing its `agent` line.
//!
//! This module is the pure part: the parameters, checked with a message and a fix
//! for each mistake, and the bytes of the announcements. `net` does the I/O.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

pub mod net;

/// IPaddr2's defaults: five announcements, 200 ms apart.
pub const ARP_COUNT: u32 = 5;
pub const ARP_INTERVAL: Duration = Duration::from_millis(200);

/// The parameters the agent accepts (for `config check`'s "unknown parameter").
pub const PARAMS: &[&str] = &[
    "ip",
    "cidr_netmask",
    "nic",
    "broadcast",
    "label",
    "arp_count",
    "arp_interval",
];

/// A virtual IP's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub ip: IpAddr,
    /// The prefix length; `None`: that of the interface's address in the same subnet.
    pub prefix: Option<u8>,
    /// The interface; `None`: the one with an address in the VIP's subnet.
    pub nic: Option<String>,
    /// IPv4 only; `None`: the subnet's last address (as `ip addr add … brd +`).
    pub broadcast: Option<Ipv4Addr>,
    pub label: Option<String>,
    pub arp_count: u32,
    pub arp_interval: Duration,
}

use crate::builtin::err;
pub use crate::builtin::ParamError;

/// Reads the parameters; every mistake found, not only the first.
pub fn parse(params: &BTreeMap<String, String>) -> Result<Vip, Vec<ParamError>> {
    let mut errors = Vec::new();
    let ip = match params.get("ip").map(|s| s.trim()) {
        None => {
            errors.push(err(
                "ip",
                "the virtual IP has no `ip`",
                "add ip = \"192.168.1.100\" (or an IPv6 address) to its params",
            ));
            None
        }
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() => {
                errors.push(err(
                    "ip",
                    format!("`{s}` cannot be a virtual IP (unspecified, multicast or loopback)"),
                    "use a unicast address of the clients' subnet",
                ));
                None
            }
            Ok(ip) => Some(ip),
            Err(_) if s.contains('/') => {
                errors.push(err(
                    "ip",
                    format!("`{s}` is an address with a prefix"),
                    "write the address in `ip` and the prefix length in `cidr_netmask`",
                ));
                None
            }
            Err(_) => {
                errors.push(err(
                    "ip",
                    format!("`{s}` is not an IP address"),
                    "write e.g. ip = \"192.168.1.100\" or ip = \"2001:db8::100\"",
                ));
                None
            }
        },
    };
    let max = match ip {
        Some(IpAddr::V6(_)) => 128,
        _ => 32,
    };
    let prefix = match params.get("cidr_netmask").map(|s| s.trim()) {
        None => None,
        Some(s) => match prefix_len(s, max) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(err(
                    "cidr_netmask",
                    e,
                    format!("write a prefix length from 1 to {max}, e.g. cidr_netmask = \"24\""),
                ));
                None
            }
        },
    };
    let nic = match params.get("nic").map(|s| s.trim()) {
        None | Some("") => None,
        // IPaddr2 takes `eth0:1` as a label on eth0; so do we.
        Some(s) => {
            let base = s.split(':').next().unwrap_or(s);
            if base.is_empty() || base.len() > 15 || base.contains('/') || base.chars().any(char::is_whitespace) {
                errors.push(err(
                    "nic",
                    format!("`{s}` is not an interface name"),
                    "write the interface's name as `ip link` shows it, e.g. nic = \"eth0\"",
                ));
                None
            } else {
                Some(base.to_string())
            }
        }
    };
    let broadcast = match (params.get("broadcast").map(|s| s.trim()), ip) {
        (None | Some("") | Some("+"), _) => None,
        (Some(s), Some(IpAddr::V6(_))) => {
            errors.push(err(
                "broadcast",
                format!("`broadcast = \"{s}\"` is set for an IPv6 address"),
                "IPv6 has no broadcast: remove it",
            ));
            None
        }
        (Some(s), _) => match s.parse::<Ipv4Addr>() {
            Ok(b) => Some(b),
            Err(_) => {
                errors.push(err(
                    "broadcast",
                    format!("`{s}` is not an IPv4 address"),
                    "write the broadcast address, or leave it out: the subnet's last address is used",
                ));
                None
            }
        },
    };
    // A `nic = "eth0:1"` names the label, as IPaddr2 reads it; `label` wins.
    let label = params
        .get("label")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            params
                .get("nic")
                .filter(|n| n.contains(':'))
                .map(|n| n.trim().to_string())
        });
    if let (Some(l), Some(IpAddr::V6(_))) = (&label, ip) {
        errors.push(err(
            "label",
            format!("label `{l}` is set for an IPv6 address"),
            "the kernel labels IPv4 addresses only: remove it",
        ));
    }
    if let Some(l) = &label {
        if l.len() > 15 {
            errors.push(err(
                "label",
                format!("label `{l}` is longer than 15 characters"),
                "the kernel keeps 15: shorten it",
            ));
        }
    }
    let arp_count = match params.get("arp_count").map(|s| s.trim()) {
        None => ARP_COUNT,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                errors.push(err(
                    "arp_count",
                    format!("`{s}` is not a count from 1 to 100"),
                    format!("write e.g. arp_count = \"{ARP_COUNT}\" (IPaddr2's default)"),
                ));
                ARP_COUNT
            }
        },
    };
    let arp_interval = match params.get("arp_interval").map(|s| s.trim()) {
        None => ARP_INTERVAL,
        Some(s) => match interval(s) {
            Some(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(60) => d,
            _ => {
                errors.push(err(
                    "arp_interval",
                    format!("`{s}` is not an interval from 1 ms to 60 s"),
                    "write milliseconds as IPaddr2 does (arp_interval = \"200\") or a duration (\"200ms\")",
                ));
                ARP_INTERVAL
            }
        },
    };
    match (ip, errors.is_empty()) {
        (Some(ip), true) => Ok(Vip {
            ip,
            prefix,
            nic,
            broadcast,
            label,
            arp_count,
            arp_interval,
        }),
        _ => Err(errors),
    }
}

/// `24`, or a dotted IPv4 netmask as IPaddr2 also takes (`255.255.255.0`).
fn prefix_len(s: &str, max: u8) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>() {
        return if (1..=max).contains(&n) {
            Ok(n)
        } else {
            Err(format!("prefix length {n} is out of range (1 to {max})"))
        };
    }
    if max == 32 {
        if let Ok(mask) = s.parse::<Ipv4Addr>() {
            let bits = u32::from(mask);
            let n = bits.leading_ones();
            if n > 0 && bits.checked_shl(n).unwrap_or(0) == 0 {
                return Ok(n as u8);
            }
            return Err(format!("`{s}` is not a contiguous netmask"));
        }
    }
    Err(format!("`{s}` is not a prefix length"))
}

/// IPaddr2's `arp_interval` is in milliseconds; a duration with a unit also reads.
fn interval(s: &str) -> Option<Duration> {
    match s.parse::<u64>() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => humantime::parse_duration(s).ok(),
    }
}

/// The subnet's last address, as `ip addr add … brd +` sets it (none for /31 and /32).
pub fn default_broadcast(ip: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    if prefix >= 31 {
        return None;
    }
    let host_bits = 32 - u32::from(prefix);
    Some(Ipv4Addr::from(u32::from(ip) | ((1u32 << host_bits) - 1)))
}

/// Whether `ip` lies in `net/prefix`.
pub fn in_subnet(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// An ARP announcement (RFC 5227 §2.3) of `ip` at `mac`: a request whose sender
/// and target address are both the VIP, as `arping -U` and keepalived send it.
/// The ARP packet only; the kernel adds the Ethernet header (to broadcast).
pub fn arp_announcement(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // Target hardware address: zero, as an announcement has it.
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) of `ip` at `mac`, to
/// all nodes, with the override flag so that caches replace the old owner's MAC.
/// The ICMPv6 message only; the kernel computes its checksum (a raw ICMPv6 socket).
pub fn neighbour_advertisement(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136; // neighbour advertisement
    p[4] = 0x20; // override; not solicited, not a router
    p[8..24].copy_from_slice(&ip.octets());
    p[24] = 2; // option: target link-layer address
    p[25] = 1; // its length in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ipaddr2s_parameters_and_defaults() {
        let v = parse(&params(&[
            ("ip", "10.0.0.100"),
            ("cidr_netmask", "24"),
            ("nic", "eth0"),
        ]))
        .unwrap();
        assert_eq!(v.ip, "10.0.0.100".parse::<IpAddr>().unwrap());
        assert_eq!((v.prefix, v.nic.as_deref()), (Some(24), Some("eth0")));
        assert_eq!((v.arp_count, v.arp_interval), (ARP_COUNT, ARP_INTERVAL));
        // A dotted netmask, a label given by nic, an interval in ms, a v6 address.
        let v = parse(&params(&[
            ("ip", "10.0.0.100"),
            ("cidr_netmask", "255.255.254.0"),
            ("nic", "eth0:vip"),
            ("arp_interval", "50"),
            ("arp_count", "3"),
        ]))
        .unwrap();
        assert_eq!(
            (v.prefix, v.nic.as_deref(), v.label.as_deref()),
            (Some(23), Some("eth0"), Some("eth0:vip"))
        );
        assert_eq!((v.arp_count, v.arp_interval), (3, Duration::from_millis(50)));
        let v = parse(&params(&[("ip", "2001:db8::100"), ("cidr_netmask", "64")])).unwrap();
        assert_eq!((v.prefix, v.nic), (Some(64), None));
    }

    #[test]
    fn each_mistake_is_named_with_its_fix() {
        // (params, the parameter blamed, words of the message)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[], "ip", "has no `ip`"),
            (&[("ip", "10.0.0.300")], "ip", "is not an IP address"),
            (&[("ip", "10.0.0.1/24")], "ip", "with a prefix"),
            (&[("ip", "224.0.0.1")], "ip", "cannot be a virtual IP"),
            (
                &[("ip", "10.0.0.1"), ("cidr_netmask", "33")],
                "cidr_netmask",
                "out of range",
            ),
            (
                &[("ip", "10.0.0.1"), ("cidr_netmask", "255.0.255.0")],
                "cidr_netmask",
                "contiguous",
            ),
            (
                &[("ip", "2001:db8::1"), ("cidr_netmask", "129")],
                "cidr_netmask",
                "out of range",
            ),
            (&[("ip", "10.0.0.1"), ("nic", "a b")], "nic", "not an interface name"),
            (
                &[("ip", "2001:db8::1"), ("broadcast", "10.0.0.255")],
                "broadcast",
                "IPv6",
            ),
            (&[("ip", "10.0.0.1"), ("broadcast", "x")], "broadcast", "not an IPv4"),
            (&[("ip", "10.0.0.1"), ("arp_count", "0")], "arp_count", "1 to 100"),
            (
                &[("ip", "10.0.0.1"), ("arp_interval", "soon")],
                "arp_interval",
                "interval",
            ),
            (
                &[("ip", "10.0.0.1"), ("label", "a-label-that-is-too-long")],
                "label",
                "15",
            ),
        ];
        for (kv, param, words) in cases {
            let e = parse(&params(kv)).unwrap_err();
            assert!(
                e.iter()
                    .any(|e| e.param == *param && e.message.contains(words) && !e.help.is_empty()),
                "{kv:?}: {e:?}"
            );
        }
        // Every mistake at once.
        let e = parse(&params(&[("ip", "nope"), ("arp_count", "x")])).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn subnets_and_broadcasts() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_subnet(ip("10.1.2.3"), ip("10.1.2.200"), 24));
        assert!(!in_subnet(ip("10.1.3.3"), ip("10.1.2.200"), 24));
        assert!(in_subnet(ip("2001:db8::5"), ip("2001:db8::1"), 64));
        assert!(!in_subnet(ip("2001:db8:1::5"), ip("2001:db8::1"), 64));
        assert!(!in_subnet(ip("10.1.2.3"), ip("2001:db8::1"), 0));
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(default_broadcast(v4("10.1.2.3"), 24), Some(v4("10.1.2.255")));
        assert_eq!(default_broadcast(v4("10.1.2.3"), 23), Some(v4("10.1.3.255")));
        assert_eq!(default_broadcast(v4("10.1.2.3"), 32), None);
    }

    #[test]
    fn the_announcements_bytes() {
        let mac = [2, 0, 0, 0, 0, 9];
        let a = arp_announcement(mac, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(&a[0..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&a[8..14], &mac);
        assert_eq!(&a[14..18], &[10, 0, 0, 100]);
        assert_eq!(&a[18..24], &[0; 6]);
        assert_eq!(&a[24..28], &[10, 0, 0, 100]);
        let ip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let n = neighbour_advertisement(mac, ip);
        assert_eq!((n[0], n[1], n[4]), (136, 0, 0x20));
        assert_eq!(&n[8..24], &ip.octets());
        assert_eq!(&n[24..32], &[2, 1, 2, 0, 0, 0, 0, 9]);
    }
}
