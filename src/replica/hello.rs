//! The replication link's authentication, pure: what HELLO must agree on, and what
//! AUTH's HMAC covers.
//!
//! Each side sends HELLO with a fresh 32-byte nonce, then AUTH: an HMAC, under the
//! cluster's signing key, of `pairbeat-replica/1`, the replica's name, the sender's
//! and the receiver's node index and the sender's and the receiver's nonces. Bound
//! to names and direction, and to both nonces, so neither a reflected nor a replayed
//! AUTH verifies (DRBD's `cram-hmac-alg` challenge-response, in this shape).

use super::wire::{Hello, PROTOCOL};

/// Why a peer's HELLO is refused.
pub fn check_hello(mine: &Hello, theirs: &Hello) -> Result<(), String> {
    if theirs.protocol != PROTOCOL {
        return Err(format!(
            "the peer speaks replica protocol {}, this node {PROTOCOL}: upgrade the older one",
            theirs.protocol
        ));
    }
    if theirs.name != mine.name {
        return Err(format!(
            "the peer serves replica `{}` on this port, not `{}`: check port and address in [[replica]]",
            theirs.name, mine.name
        ));
    }
    if theirs.resource != mine.resource {
        return Err(format!(
            "the peer's replica `{}` is another resource (its metadata was created for another cluster or size): re-create one side with `pairbeat replica create`",
            theirs.name
        ));
    }
    if theirs.node != 1 - mine.node {
        return Err(format!(
            "the peer claims node index {}, the same as this node's",
            theirs.node
        ));
    }
    if theirs.size != mine.size || theirs.extent != mine.extent {
        return Err(format!(
            "the peer's replica is {} bytes in extents of {}, this one {} in {}: sizes must match",
            theirs.size, theirs.extent, mine.size, mine.extent
        ));
    }
    if theirs.nonce == mine.nonce {
        return Err("the peer echoed this node's nonce (a reflected handshake)".into());
    }
    Ok(())
}

/// What the AUTH HMAC covers, for the side `from` sending to `to`.
pub fn auth_input(name: &str, from: &Hello, to: &Hello) -> Vec<u8> {
    let mut v = b"pairbeat-replica/1".to_vec();
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v.push(from.node);
    v.push(to.node);
    v.extend_from_slice(&from.nonce);
    v.extend_from_slice(&to.nonce);
    v
}

/// The resource UUID both nodes derive from the cluster's and the replica's names
/// and the size, so the two sides agree without talking, and a peer configured for
/// another disk is refused.
pub fn resource_uuid(cluster: &str, replica: &str, size: u64) -> [u8; 16] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"pairbeat-replica-resource\0");
    h.update(cluster.as_bytes());
    h.update([0]);
    h.update(replica.as_bytes());
    h.update([0]);
    h.update(size.to_le_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node: u8, nonce: u8) -> Hello {
        Hello {
            protocol: PROTOCOL,
            node,
            resource: resource_uuid("pair", "r0", 1 << 20),
            size: 1 << 20,
            extent: 4096,
            nonce: [nonce; 32],
            name: "r0".into(),
        }
    }

    #[test]
    fn a_foreign_or_mismatched_peer_is_refused_with_the_reason() {
        let me = hello(0, 1);
        assert_eq!(check_hello(&me, &hello(1, 2)), Ok(()));
        let foreign = Hello {
            resource: resource_uuid("other", "r0", 1 << 20),
            ..hello(1, 2)
        };
        assert!(check_hello(&me, &foreign).unwrap_err().contains("another resource"));
        let same_node = hello(0, 2);
        assert!(check_hello(&me, &same_node).unwrap_err().contains("same as this node"));
        let reflected = hello(1, 1);
        assert!(check_hello(&me, &reflected).unwrap_err().contains("reflected"));
        let bigger = Hello {
            size: 2 << 20,
            ..hello(1, 2)
        };
        assert!(check_hello(&me, &bigger).unwrap_err().contains("sizes must match"));
        let named = Hello {
            name: "r1".into(),
            ..hello(1, 2)
        };
        assert!(check_hello(&me, &named).unwrap_err().contains("not `r0`"));
    }

    #[test]
    fn the_mac_input_is_bound_to_direction_and_both_nonces() {
        let (a, b) = (hello(0, 1), hello(1, 2));
        assert_ne!(auth_input("r0", &a, &b), auth_input("r0", &b, &a));
        let b2 = hello(1, 3);
        assert_ne!(auth_input("r0", &a, &b), auth_input("r0", &a, &b2));
        assert_ne!(resource_uuid("pair", "r0", 1), resource_uuid("pair", "r1", 1));
    }
}
