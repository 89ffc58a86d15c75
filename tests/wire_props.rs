//! Property tests: the decoder never panics, whatever arrives, and what pairbeat
//! seals it opens again unchanged. (The cargo-fuzz target in fuzz/ goes further.)

use std::collections::BTreeMap;

use pairbeat::config::{Auth, AuthKey, AuthMethod};
use pairbeat::wire::{self, Message};
use proptest::prelude::*;

fn auth(method: AuthMethod) -> Auth {
    let mut keys = BTreeMap::new();
    let secret = if method == AuthMethod::Crc {
        vec![]
    } else {
        b"k3y".to_vec()
    };
    keys.insert(1, AuthKey { method, secret });
    Auth {
        sign_index: 1,
        keys,
        authkeys_file: None,
    }
}

fn method() -> impl Strategy<Value = AuthMethod> {
    prop_oneof![
        Just(AuthMethod::Sha1),
        Just(AuthMethod::Md5),
        Just(AuthMethod::Sha256),
        Just(AuthMethod::Crc)
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let name = "[a-z][a-z_]{0,10}".prop_filter("auth is reserved", |n| n != "auth");
    let field = (name, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40));
    proptest::collection::vec(field, 0..12).prop_map(|fields| {
        let mut m = Message::new();
        for (name, binary, value) in fields {
            if binary {
                m.add_bin(&name, &value);
            } else {
                // String fields cannot hold a newline in the classic form; netstring can.
                let text: String = value.iter().map(|b| (b'a' + b % 26) as char).collect();
                m.add_str(&name, &text);
            }
        }
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn open_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = wire::open(&data, &auth(AuthMethod::Sha1));
    }

    #[test]
    fn open_never_panics_on_netstring_shaped_noise(body in "[0-9:(),=a-z%#\\n]{0,300}") {
        let _ = wire::open(format!("###\n{body}").as_bytes(), &auth(AuthMethod::Sha1));
        let _ = wire::open(format!(">>>\n{body}").as_bytes(), &auth(AuthMethod::Crc));
    }

    #[test]
    fn sealed_messages_open_unchanged(msg in message(), m in method()) {
        let a = auth(m);
        let bytes = wire::seal(&msg, &a);
        let opened = wire::open(&bytes, &a).unwrap();
        // The opened message is the original plus the inner auth field, last.
        prop_assert_eq!(&opened.fields[..msg.fields.len()], &msg.fields[..]);
        prop_assert_eq!(opened.fields.last().map(|f| f.name.as_str()), Some("auth"));
    }

    #[test]
    fn any_single_corruption_of_a_sealed_message_is_refused(msg in message(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let a = auth(AuthMethod::Sha256);
        let mut bytes = wire::seal(&msg, &a);
        let i = pos.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(wire::open(&bytes, &a).is_err());
    }
}
