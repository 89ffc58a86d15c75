//! The virtual IP's I/O: the address added, removed and read back over rtnetlink
//! (no `ip` command forked), the announcements sent on raw sockets (an AF_PACKET
//! socket for ARP, a raw ICMPv6 socket for neighbour advertisements), and their
//! repeats on a timer of the daemon's runtime. A repeat stops as soon as the
//! address is stopped or started afresh (a generation per address).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};
use std::sync::Mutex;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::Handle;

use super::{arp_announcement, default_broadcast, in_subnet, neighbour_advertisement, Vip};

use crate::builtin::failed;
pub use crate::builtin::Answer;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    /// `announce`: the monitor re-asserts the group (after a split brain): the
    /// address is announced again, as at start.
    Monitor {
        announce: bool,
    },
}

/// The interface that carries (or is to carry) the address.
#[derive(Debug, Clone)]
struct Place {
    index: u32,
    name: String,
    mac: Option<[u8; 6]>,
    prefix: u8,
}

/// Each address's announcement generation: a repeat of an older one stops.
static GENERATION: Mutex<BTreeMap<IpAddr, u64>> = Mutex::new(BTreeMap::new());

fn bump(ip: IpAddr) -> u64 {
    let mut g = GENERATION.lock().unwrap_or_else(|e| e.into_inner());
    let n = g.entry(ip).or_insert(0);
    *n += 1;
    *n
}

/// Runs one operation on the daemon's runtime (the caller bounds its time).
pub async fn run(vip: &Vip, op: Op) -> Answer {
    let handle = match connect() {
        Ok(h) => h,
        Err(e) => return failed(1, e),
    };
    if op == Op::Stop {
        // Repeats of an earlier start stop now, whatever follows.
        bump(vip.ip);
    }
    // Where the address is now, on whichever interface: a stop or a monitor acts on
    // what is there, even where the interface or the subnet's own address that
    // `locate` needs is gone (a stop that said "done" on a lookup failure would let
    // the peer add the same address beside it).
    let held = match find_anywhere(&handle, vip.ip).await {
        Ok(h) => h,
        Err(e) => return failed(1, e),
    };
    match (op, held) {
        (Op::Stop, None) => Answer::Done,
        (Op::Stop, Some(msg)) => {
            let index = msg.header.index;
            match handle.address().del(msg).execute().await {
                Ok(()) => Answer::Done,
                Err(e) => failed(1, format!("removing {} from interface {index}: {e}", vip.ip)),
            }
        }
        (Op::Monitor { .. }, None) => Answer::NotRunning,
        (Op::Monitor { announce }, Some(msg)) => {
            if announce {
                if let Ok(place) = place_of(&handle, &msg).await {
                    announce_all(vip, &place).await;
                }
            }
            Answer::Running
        }
        (Op::Start, Some(msg)) => {
            // Already up (a restarted daemon adopts it): announce it again.
            if let Ok(place) = place_of(&handle, &msg).await {
                announce_all(vip, &place).await;
            }
            Answer::Done
        }
        (Op::Start, None) => {
            let place = match locate(&handle, vip).await {
                Ok(p) => p,
                Err(e) => return e,
            };
            if let Err(e) = add(&handle, vip, &place).await {
                return failed(1, format!("adding {}/{} to {}: {e}", vip.ip, place.prefix, place.name));
            }
            announce_all(vip, &place).await;
            Answer::Done
        }
    }
}

/// The address's message, on any interface of the host.
async fn find_anywhere(handle: &Handle, ip: IpAddr) -> Result<Option<AddressMessage>, String> {
    let mut stream = handle.address().get().execute();
    while let Some(msg) = stream.try_next().await.map_err(|e| format!("reading addresses: {e}"))? {
        if address_of(&msg) == Some(ip) {
            return Ok(Some(msg));
        }
    }
    Ok(None)
}

/// The interface an address message names, to announce from.
async fn place_of(handle: &Handle, msg: &AddressMessage) -> Result<Place, String> {
    let (name, mac) = link_by_index(handle, msg.header.index).await?;
    Ok(Place {
        index: msg.header.index,
        name,
        mac,
        prefix: msg.header.prefix_len,
    })
}

/// What `config check` asks of this host: the interface exists (or one has an
/// address in the VIP's subnet). The error says which and what to do.
pub async fn check_host(vip: &Vip) -> Result<String, String> {
    let handle = connect()?;
    match locate(&handle, vip).await {
        Ok(p) => Ok(p.name),
        Err(Answer::Failed { reason, .. }) => Err(reason),
        Err(other) => Err(format!("{other:?}")),
    }
}

fn connect() -> Result<Handle, String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The interface: `nic` if given, else the one with an address in the VIP's
/// subnet (as IPaddr2's findif); the prefix: `cidr_netmask`, else that address's.
async fn locate(handle: &Handle, vip: &Vip) -> Result<Place, Answer> {
    let addrs = addresses(handle).await.map_err(|e| failed(1, e))?;
    // An address of another host's subnet: (index, its address, its prefix).
    let same_subnet = |index: Option<u32>| {
        addrs
            .iter()
            .filter(|(i, _, _)| index.is_none_or(|x| x == *i))
            .filter(|(_, a, p)| *a != vip.ip && in_subnet(vip.ip, *a, *p))
            .map(|(i, _, p)| (*i, *p))
            .next()
    };
    let (index, prefix) = match &vip.nic {
        Some(nic) => {
            let link = link_by_name(handle, nic).await.map_err(|e| failed(1, e))?;
            let Some(index) = link else {
                let known = link_names(handle).await.unwrap_or_default();
                return Err(failed(
                    5,
                    format!(
                        "interface `{nic}` does not exist on this host (it has {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            let prefix = match (vip.prefix, same_subnet(Some(index))) {
                (Some(p), _) => p,
                (None, Some((_, p))) => p,
                (None, None) => {
                    return Err(failed(
                        6,
                        format!(
                            "no address of {nic} is in {}'s subnet, so its prefix length is unknown: set cidr_netmask",
                            vip.ip
                        ),
                    ))
                }
            };
            (index, prefix)
        }
        None => match same_subnet(None) {
            Some((i, p)) => (i, vip.prefix.unwrap_or(p)),
            None => {
                return Err(failed(
                    6,
                    format!(
                        "no interface of this host has an address in {}'s subnet: set nic (and cidr_netmask)",
                        vip.ip
                    ),
                ))
            }
        },
    };
    let (name, mac) = link_by_index(handle, index).await.map_err(|e| failed(1, e))?;
    Ok(Place {
        index,
        name,
        mac,
        prefix,
    })
}

/// Every address of the host: (interface, address, prefix).
async fn addresses(handle: &Handle) -> Result<Vec<(u32, IpAddr, u8)>, String> {
    let mut out = Vec::new();
    let mut stream = handle.address().get().execute();
    while let Some(msg) = stream.try_next().await.map_err(|e| format!("reading addresses: {e}"))? {
        if let Some(a) = address_of(&msg) {
            out.push((msg.header.index, a, msg.header.prefix_len));
        }
    }
    Ok(out)
}

fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address where it differs (point-to-point).
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<u32>, String> {
    let mut stream = handle.link().get().match_name(name.to_string()).execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers ENODEV for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(format!("reading interface {name}: {e}")),
    }
}

async fn link_names(handle: &Handle) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut stream = handle.link().get().execute();
    while let Some(msg) = stream.try_next().await.map_err(|e| e.to_string())? {
        names.extend(msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        }));
    }
    Ok(names)
}

async fn link_by_index(handle: &Handle, index: u32) -> Result<(String, Option<[u8; 6]>), String> {
    let mut stream = handle.link().get().match_index(index).execute();
    let msg = stream
        .try_next()
        .await
        .map_err(|e| format!("reading interface {index}: {e}"))?
        .ok_or_else(|| format!("interface {index} is gone"))?;
    let name = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_else(|| index.to_string());
    let mac = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) if m.len() == 6 => {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(m);
            Some(mac)
        }
        _ => None,
    });
    Ok((name, mac))
}

async fn add(handle: &Handle, vip: &Vip, place: &Place) -> Result<(), String> {
    let mut req = handle.address().add(place.index, vip.ip, place.prefix);
    let msg = req.message_mut();
    match vip.ip {
        IpAddr::V4(ip) => {
            msg.attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
            if let Some(b) = vip.broadcast.or_else(|| default_broadcast(ip, place.prefix)) {
                msg.attributes.push(AddressAttribute::Broadcast(b));
            }
            if let Some(l) = &vip.label {
                msg.attributes.push(AddressAttribute::Label(l.clone()));
            }
        }
        // No duplicate address detection: the address is ours to take over, and a
        // tentative one could not be announced (nor used) for a second or more.
        IpAddr::V6(_) => msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad)),
    }
    req.execute().await.map_err(|e| e.to_string())
}

/// The first announcement now, the rest on a timer (the operation does not wait
/// for them, as IPaddr2 leaves `send_arp` in the background).
async fn announce_all(vip: &Vip, place: &Place) {
    let Some(mac) = place.mac else {
        log::info!(
            "{} on {}: the interface has no MAC address; nothing to announce",
            vip.ip,
            place.name
        );
        return;
    };
    let generation = bump(vip.ip);
    if let Err(e) = announce(vip.ip, mac, place.index) {
        log::warn!("announcing {} on {}: {e}", vip.ip, place.name);
    }
    let (ip, index, name, count, every) = (vip.ip, place.index, place.name.clone(), vip.arp_count, vip.arp_interval);
    tokio::spawn(async move {
        for _ in 1..count {
            tokio::time::sleep(every).await;
            // Checked and sent under the lock: a stop (which bumps the generation)
            // cannot slip in between and be followed by one more announcement.
            let sent = {
                let g = GENERATION.lock().unwrap_or_else(|e| e.into_inner());
                if g.get(&ip).copied().unwrap_or(0) != generation {
                    return;
                }
                announce(ip, mac, index)
            };
            if let Err(e) = sent {
                log::warn!("announcing {ip} on {name}: {e}");
                return;
            }
        }
    });
}

/// One announcement of `ip` at `mac` on interface `index`.
fn announce(ip: IpAddr, mac: [u8; 6], index: u32) -> Result<(), String> {
    match ip {
        IpAddr::V4(v4) => send_arp(&arp_announcement(mac, v4), index),
        IpAddr::V6(v6) => send_na(&neighbour_advertisement(mac, v6), v6, index),
    }
}

/// An ARP packet to the Ethernet broadcast address, on an AF_PACKET datagram
/// socket (the kernel writes the Ethernet header).
fn send_arp(packet: &[u8], index: u32) -> Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const ETH_P_ARP: u16 = 0x0806;
    // SAFETY: plain socket(2); the descriptor is owned (and closed) at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if fd < 0 {
        return Err(format!("AF_PACKET socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor of ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and the address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            std::ptr::addr_of!(to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(format!("sending ARP: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A neighbour advertisement to all nodes (ff02::1) from the VIP itself, hop
/// limit 255 as RFC 4861 requires of the receivers.
fn send_na(packet: &[u8], from: Ipv6Addr, index: u32) -> Result<(), String> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(|e| format!("ICMPv6 socket: {e}"))?;
    s.set_multicast_if_v6(index).map_err(|e| e.to_string())?;
    s.set_multicast_hops_v6(255).map_err(|e| e.to_string())?;
    s.bind(&SockAddr::from(SocketAddrV6::new(from, 0, 0, index)))
        .map_err(|e| format!("binding to {from}: {e}"))?;
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    s.send_to(packet, &SockAddr::from(all_nodes))
        .map_err(|e| format!("sending a neighbour advertisement: {e}"))?;
    Ok(())
}
