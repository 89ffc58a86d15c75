//! Packet digests, computed exactly as Heartbeat 3.0.6 does (Heartbeat 3.0.6 lib/plugins/HBauth):
//! HMAC-SHA1 and HMAC-MD5 (RFC 2104, key = the authkeys token's bytes) as lowercase
//! hex; `crc` = CRC-32/POSIX without the length suffix, printed `%lx`. HMAC-SHA256
//! is pairbeat's own, for pairbeat-only clusters.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use hmac::{Hmac, KeyInit, Mac};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthMethod {
    Sha1,
    Sha256,
    Md5,
    /// A checksum, not authentication: anyone on the link can forge packets.
    Crc,
}

impl AuthMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sha1" => Some(AuthMethod::Sha1),
            "sha256" => Some(AuthMethod::Sha256),
            "md5" => Some(AuthMethod::Md5),
            "crc" => Some(AuthMethod::Crc),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::Sha1 => "sha1",
            AuthMethod::Sha256 => "sha256",
            AuthMethod::Md5 => "md5",
            AuthMethod::Crc => "crc",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    pub method: AuthMethod,
    pub secret: Vec<u8>,
}

// Secrets stay out of logs and debug dumps.
impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({}, <{} bytes>)", self.method.name(), self.secret.len())
    }
}

/// Keys by index, as in Heartbeat's authkeys; outgoing packets are signed with `sign_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub sign_index: u8,
    pub keys: BTreeMap<u8, AuthKey>,
    /// The authkeys file, when keys came from one (re-read on reload).
    pub authkeys_file: Option<PathBuf>,
}

impl Auth {
    pub fn signing_key(&self) -> &AuthKey {
        // validate guarantees the signing index is present.
        &self.keys[&self.sign_index]
    }
}

/// The digest of `data` under `key`, as the hex text that goes on the wire.
pub fn digest(key: &AuthKey, data: &[u8]) -> String {
    match key.method {
        AuthMethod::Sha1 => hex(&hmac_bytes::<Hmac<sha1::Sha1>>(&key.secret, data)),
        AuthMethod::Md5 => hex(&hmac_bytes::<Hmac<md5::Md5>>(&key.secret, data)),
        AuthMethod::Sha256 => hex(&hmac_bytes::<Hmac<sha2::Sha256>>(&key.secret, data)),
        AuthMethod::Crc => format!("{:x}", crc32_posix(data)),
    }
}

/// Checks a received hex digest without leaking, through timing, how much of it matched.
pub fn verify(key: &AuthKey, data: &[u8], claimed_hex: &[u8]) -> bool {
    let expected = digest(key, data);
    let expected = expected.as_bytes();
    if expected.len() != claimed_hex.len() {
        return false;
    }
    expected.iter().zip(claimed_hex).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn hmac_bytes<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// CRC-32, polynomial 0x04C11DB7, MSB first, init 0, final xor 0xFFFFFFFF.
fn crc32_posix(data: &[u8]) -> u32 {
    let mut crc: u32 = 0;
    for &byte in data {
        crc ^= (byte as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: AuthMethod, secret: &str) -> AuthKey {
        AuthKey {
            method,
            secret: secret.as_bytes().to_vec(),
        }
    }

    #[test]
    fn hmac_vectors_from_rfc_2202_and_4231() {
        // RFC 2202 test case 2 (SHA-1 and MD5), RFC 4231 test case 2 (SHA-256).
        let data = b"what do ya want for nothing?";
        assert_eq!(
            digest(&key(AuthMethod::Sha1, "Jefe"), data),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            digest(&key(AuthMethod::Md5, "Jefe"), data),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert_eq!(
            digest(&key(AuthMethod::Sha256, "Jefe"), data),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn crc_is_posix_register_without_length() {
        // The CRC catalogue's CRC-32/CKSUM check value (poly 04c11db7, init 0, not
        // reflected, xorout ffffffff), i.e. cksum(1) before it appends the length.
        assert_eq!(crc32_posix(b"123456789"), 0x765e_7680);
        assert_eq!(digest(&key(AuthMethod::Crc, ""), b""), "ffffffff");
    }

    #[test]
    fn verify_rejects_wrong_and_short_digests() {
        let k = key(AuthMethod::Sha1, "s");
        let good = digest(&k, b"x");
        assert!(verify(&k, b"x", good.as_bytes()));
        assert!(!verify(&k, b"y", good.as_bytes()));
        assert!(!verify(&k, b"x", &good.as_bytes()[..39]));
    }
}
