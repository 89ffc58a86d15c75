//! Heartbeat's authkeys file: `auth N` names the signing key, `N METHOD [KEY]` lines
//! define keys. Read unchanged, so a Heartbeat cluster's keys work in pairbeat.
//!
//! As Heartbeat does (auth.c), a file readable by group or others is refused; unlike
//! Heartbeat, every bad line is reported, not only the first.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::diag::{Diagnostics, Location, SourceFile};
use super::{Auth, AuthKey, AuthMethod};

/// Heartbeat's MAXAUTH: indices 0..=15.
pub const MAX_INDEX: i64 = 15;

/// Refuses a secret-bearing file that group or others can read.
pub fn check_private(path: &Path, what: &str, diags: &mut Diagnostics) {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o044 != 0 {
                diags.error(
                    Location::file(path),
                    format!("{what} is readable by group or others (mode {mode:04o}); it holds a secret key"),
                    Some(format!("run `chmod 600 {}`", path.display())),
                );
            }
        }
        Err(e) => diags.error(Location::file(path), format!("cannot read {what}: {e}"), None),
    }
}

/// Reads and checks an authkeys file, permissions included.
pub fn load(path: &Path, diags: &mut Diagnostics) -> Option<Auth> {
    check_private(path, "the authkeys file", diags);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => return None, // check_private reported it
    };
    parse(&SourceFile::new(path, text), diags)
}

/// Parses authkeys text, reporting each bad line.
pub fn parse(file: &SourceFile, diags: &mut Diagnostics) -> Option<Auth> {
    let mut sign: Option<(u8, usize)> = None;
    let mut keys: BTreeMap<u8, AuthKey> = BTreeMap::new();
    let mut ok = true;
    let lines = file.text.lines().count();
    for n in 1..=lines {
        let raw = file.line_text(n);
        let content = raw.split('#').next().unwrap_or("");
        let words: Vec<&str> = content.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let here = Location::at(file, file.line_span(n));
        let mut bad = |msg: String, help: &str| {
            diags.error(here.clone(), msg, Some(help.to_string()));
            ok = false;
        };
        if words[0] == "auth" {
            match words.get(1).and_then(|w| w.parse::<i64>().ok()) {
                Some(i) if (0..=MAX_INDEX).contains(&i) && words.len() == 2 => {
                    if sign.is_some() {
                        bad(
                            "a second `auth` line".into(),
                            "keep one `auth N` line naming the signing key",
                        );
                    }
                    sign = Some((i as u8, n));
                }
                _ => bad(
                    format!("`{}` is not a valid auth line", content.trim()),
                    "write `auth N` with N from 0 to 15, the index of the key that signs packets",
                ),
            }
            continue;
        }
        let index = match words[0].parse::<i64>() {
            Ok(i) if (0..=MAX_INDEX).contains(&i) => i as u8,
            _ => {
                bad(
                    format!("`{}` is neither `auth N` nor a key line", content.trim()),
                    "key lines are `N METHOD KEY` with N from 0 to 15, e.g. `1 sha1 s3cret`",
                );
                continue;
            }
        };
        let Some(method) = words.get(1).and_then(|m| AuthMethod::parse(m)) else {
            bad(
                format!("key {index}: unknown method `{}`", words.get(1).unwrap_or(&"")),
                "methods are sha1, sha256, md5 and crc",
            );
            continue;
        };
        let secret = match (method, &words[2..]) {
            (AuthMethod::Crc, []) => Vec::new(),
            (AuthMethod::Crc, _) => {
                bad(format!("key {index}: crc takes no key"), "write `N crc` alone");
                continue;
            }
            (_, [key]) => key.as_bytes().to_vec(),
            (_, []) => {
                bad(
                    format!("key {index}: {} needs a key", method.name()),
                    "write `N METHOD KEY`; the key is one word with no spaces",
                );
                continue;
            }
            (_, _) => {
                bad(
                    format!("key {index}: the key has spaces"),
                    "Heartbeat reads the key as a single word; remove the spaces",
                );
                continue;
            }
        };
        if keys.insert(index, AuthKey { method, secret }).is_some() {
            bad(
                format!("key {index} is defined twice"),
                "give each key line its own index",
            );
        }
    }
    let Some((sign_index, line)) = sign else {
        diags.error(
            Location::file(&file.path),
            "no `auth N` line names the signing key",
            Some("add `auth 1` (or the index of the key to sign with)".into()),
        );
        return None;
    };
    if !keys.contains_key(&sign_index) {
        diags.error(
            Location::at(file, file.line_span(line)),
            format!("`auth {sign_index}` names a key that is not defined"),
            Some(format!("add a line `{sign_index} sha1 KEY` or change the auth line")),
        );
        return None;
    }
    ok.then(|| Auth {
        sign_index,
        keys,
        authkeys_file: Some(file.path.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> (Option<Auth>, String) {
        let mut d = Diagnostics::default();
        let a = parse(&SourceFile::new("authkeys", text), &mut d);
        (a, d.to_string())
    }

    #[test]
    fn reads_heartbeat_sample() {
        let (a, d) = parse_str("auth 2\n#1 crc\n2 sha1 HI!\n3 md5 Hello!\n");
        let a = a.unwrap_or_else(|| panic!("{d}"));
        assert_eq!(a.sign_index, 2);
        assert_eq!(a.signing_key().method, AuthMethod::Sha1);
        assert_eq!(a.signing_key().secret, b"HI!");
        assert_eq!(a.keys.len(), 2);
    }

    #[test]
    fn crc_takes_no_key_and_others_need_one() {
        let (a, d) = parse_str("auth 1\n1 crc oops\n2 sha1\n");
        assert!(a.is_none());
        assert!(d.contains("authkeys:2:1: error: key 1: crc takes no key"), "{d}");
        assert!(d.contains("authkeys:3:1: error: key 2: sha1 needs a key"), "{d}");
    }

    #[test]
    fn signing_key_must_exist() {
        let (a, d) = parse_str("auth 3\n1 sha1 x\n");
        assert!(a.is_none());
        assert!(
            d.contains("authkeys:1:1: error: `auth 3` names a key that is not defined"),
            "{d}"
        );
    }

    #[test]
    fn bad_index_and_method_are_named() {
        let (_, d) = parse_str("auth 1\n1 sha1 a\n16 sha1 b\n2 blowfish c\n");
        assert!(d.contains("authkeys:3:1"), "{d}");
        assert!(d.contains("unknown method `blowfish`"), "{d}");
    }

    #[test]
    fn group_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("authkeys");
        std::fs::write(&p, "auth 1\n1 sha1 secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut d = Diagnostics::default();
        load(&p, &mut d);
        assert!(d.to_string().contains("readable by group or others (mode 0640)"), "{d}");
        assert!(d.to_string().contains("chmod 600"), "{d}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut d = Diagnostics::default();
        assert!(load(&p, &mut d).is_some(), "{d}");
        assert!(!d.has_errors());
    }
}
