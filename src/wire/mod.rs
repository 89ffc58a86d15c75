//! The wire: Heartbeat 3.0.6's packet format and authentication, and replay checks.
//!
//! Pure code, no I/O. A datagram goes through [`open`], which authenticates it
//! before anything in it is believed (no per-sender state exists before that),
//! and a message to send goes through [`seal`], which adds the inner `auth`
//! field and the outer digest exactly as a Heartbeat node does, so the two can
//! talk. [`replay`] keeps per-sender generation and sequence numbers.

pub mod advert;
pub mod auth;
pub mod message;
pub mod replay;

pub use message::{Field, FieldType, Message};

use auth::Auth;

/// Largest UDP payload there can be; anything claiming more was truncated.
pub const MAX_DATAGRAM: usize = 65_507;

/// Why a datagram was dropped. Each kind has its own counter in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated packet")]
    Truncated,
    #[error("oversized packet")]
    Oversized,
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("signed with key index {0}, which is not in our keys")]
    UnknownKey(u8),
    #[error("authentication failed")]
    Forged,
}

/// Encodes a message for the wire: fields, then the inner `auth` field (over the
/// classic text), then the outer digest (over the netstring body), both with the
/// signing key, as Heartbeat's `add_msg_auth` and `msg2netstring` do.
pub fn seal(msg: &Message, auth: &Auth) -> Vec<u8> {
    let key = auth.signing_key();
    let mut signed = msg.clone();
    signed.fields.retain(|f| f.name != "auth");
    let inner = auth::digest(key, &signed.classic_text(None));
    signed.add_str("auth", &format!("{} {inner}", auth.sign_index));
    let mut out = signed.encode_netstring();
    let outer = auth::digest(key, &out);
    let trailer = format!("{} {outer}", auth.sign_index);
    out.extend_from_slice(format!("{}:{trailer},", trailer.len()).as_bytes());
    out
}

/// Authenticates and decodes a datagram (netstring or classic form).
///
/// For netstring packets the outer digest over the exact body bytes is checked,
/// as Heartbeat does; for classic ones the inner `auth` field over the classic text.
pub fn open(data: &[u8], auth: &Auth) -> Result<Message, WireError> {
    if data.len() > MAX_DATAGRAM {
        return Err(WireError::Oversized);
    }
    if data.starts_with(message::NETSTRING_HEAD) {
        let end = find(data, message::NETSTRING_TAIL).ok_or(WireError::Truncated)? + message::NETSTRING_TAIL.len();
        let (body, trailer) = data.split_at(end);
        let (sig, rest) = message::take_netstring(trailer)?;
        if !rest.is_empty() {
            return Err(WireError::Malformed("bytes after the auth trailer"));
        }
        check_signature(sig, body, auth)?;
        Message::decode_netstring(body)
    } else if data.starts_with(message::CLASSIC_HEAD) {
        let msg = Message::decode_classic(data)?;
        let sig = msg.get_bin("auth").ok_or(WireError::Forged)?;
        check_signature(sig, &msg.classic_text(Some("auth")), auth)?;
        Ok(msg)
    } else if data.is_empty() || message::NETSTRING_HEAD.starts_with(data) || message::CLASSIC_HEAD.starts_with(data) {
        Err(WireError::Truncated)
    } else {
        Err(WireError::Malformed("neither ### nor >>> at the start"))
    }
}

/// `<index> <hex>`: the key index must be one we hold, and the digest must match.
fn check_signature(sig: &[u8], data: &[u8], auth: &Auth) -> Result<(), WireError> {
    let space = sig
        .iter()
        .position(|&b| b == b' ')
        .ok_or(WireError::Malformed("auth without key index"))?;
    let index: u8 = std::str::from_utf8(&sig[..space])
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(WireError::Malformed("auth key index"))?;
    let key = auth.keys.get(&index).ok_or(WireError::UnknownKey(index))?;
    if auth::verify(key, data, &sig[space + 1..]) {
        Ok(())
    } else {
        Err(WireError::Forged)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
