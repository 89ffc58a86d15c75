//! Any datagram, under every auth method: `wire::open` must return, never panic,
//! and whatever it accepts must survive a seal/open round trip.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use pairbeat::config::{Auth, AuthKey, AuthMethod};
use pairbeat::wire;

fuzz_target!(|data: &[u8]| {
    for method in [AuthMethod::Sha1, AuthMethod::Md5, AuthMethod::Sha256, AuthMethod::Crc] {
        let mut keys = BTreeMap::new();
        let secret = if method == AuthMethod::Crc { vec![] } else { b"fuzz".to_vec() };
        keys.insert(1, AuthKey { method, secret });
        let auth = Auth { sign_index: 1, keys, authkeys_file: None };
        if let Ok(msg) = wire::open(data, &auth) {
            let mut fields = msg.clone();
            fields.fields.retain(|f| f.name != "auth");
            let again = wire::open(&wire::seal(&fields, &auth), &auth).expect("a sealed message opens");
            assert_eq!(again.fields.len(), fields.fields.len() + 1);
        }
        // Unsigned bodies reach the structural decoders directly.
        let _ = wire::message::Message::decode_netstring(data);
        let _ = wire::message::Message::decode_classic(data);
    }
});
