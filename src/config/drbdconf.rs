//! drbd.conf (DRBD 8.3 / 8.4 syntax), read for `pairbeat config import --drbd-conf`.
//!
//! The file is a tree of statements: words up to `;`, or words and a `{ … }` block
//! (`resource r0 { on alpha { disk /dev/sda3; } }`); `#` starts a comment; a value
//! may be a quoted string. [`parse`] reads that tree with every word's place in the
//! file, and [`read`] picks out what a pairbeat `[[replica]]` can carry: per
//! resource its protocol, resync rate, fencing mode and each host's device, disk,
//! address and metadata, with `common { }` as the defaults DRBD takes from it.
//! Everything else is kept as a statement with its place, so the importer can say
//! what it did not translate, and where.

use std::ops::Range;

use super::diag::{Diagnostics, Location, SourceFile};

/// One statement: its words, and its block if it has one.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub words: Vec<(String, Range<usize>)>,
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    fn head(&self) -> &str {
        self.words.first().map_or("", |w| w.0.as_str())
    }

    fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(|w| w.0.as_str())
    }

    fn span(&self) -> Range<usize> {
        self.words.first().map_or(0..0, |w| w.1.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    End,
}

fn tokens(text: &str) -> Vec<(Tok, Range<usize>)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' | b'}' | b';' => {
                let t = match c {
                    b'{' => Tok::Open,
                    b'}' => Tok::Close,
                    _ => Tok::End,
                };
                out.push((t, i..i + 1));
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                let mut s = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                    s.push(ch);
                    i += ch.len_utf8();
                }
                i = (i + 1).min(b.len());
                out.push((Tok::Word(s), start..i));
            }
            _ if c.is_ascii_whitespace() => i += 1,
            _ => {
                let start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && !b"{};#\"".contains(&b[i]) {
                    i += text[i..].chars().next().map_or(1, char::len_utf8);
                }
                out.push((Tok::Word(text[start..i].to_string()), start..i));
            }
        }
    }
    out
}

/// The file's statements; a brace that does not match is an error at its place.
pub fn parse(file: &SourceFile, notes: &mut Diagnostics) -> Vec<Stmt> {
    let toks = tokens(&file.text);
    let mut pos = 0;
    let mut top = block(file, &toks, &mut pos, None, notes);
    while pos < toks.len() {
        // A `}` with nothing open: report it and read on.
        notes.error(
            Location::at(file, toks[pos].1.clone()),
            "this `}` closes nothing",
            Some("remove it, or add the `{` it was meant to close".into()),
        );
        pos += 1;
        top.extend(block(file, &toks, &mut pos, None, notes));
    }
    top
}

fn block(
    file: &SourceFile,
    toks: &[(Tok, Range<usize>)],
    pos: &mut usize,
    opened: Option<Range<usize>>,
    notes: &mut Diagnostics,
) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    let mut words = Vec::new();
    while *pos < toks.len() {
        let (t, span) = &toks[*pos];
        *pos += 1;
        match t {
            Tok::Word(w) => words.push((w.clone(), span.clone())),
            Tok::End => {
                if !words.is_empty() {
                    stmts.push(Stmt {
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
            }
            Tok::Open => {
                let at = words
                    .first()
                    .map_or(span.clone(), |w: &(String, Range<usize>)| w.1.clone());
                let inner = block(file, toks, pos, Some(at), notes);
                stmts.push(Stmt {
                    words: std::mem::take(&mut words),
                    block: Some(inner),
                });
            }
            Tok::Close => {
                if opened.is_none() {
                    *pos -= 1;
                }
                flush_words(file, &mut words, &mut stmts, notes);
                return stmts;
            }
        }
    }
    flush_words(file, &mut words, &mut stmts, notes);
    if let Some(at) = opened {
        notes.error(
            Location::at(file, at),
            "this block is never closed",
            Some("add the missing `}` (a comment may have swallowed it)".into()),
        );
    }
    stmts
}

/// Words left before a `}` or the end: a statement missing its `;`.
fn flush_words(
    file: &SourceFile,
    words: &mut Vec<(String, Range<usize>)>,
    stmts: &mut Vec<Stmt>,
    notes: &mut Diagnostics,
) {
    if let Some(first) = words.first() {
        notes.warning(
            Location::at(file, first.1.clone()),
            format!("`{}` has no `;` after it; read as if it had", first.0),
            None,
        );
        stmts.push(Stmt {
            words: std::mem::take(words),
            block: None,
        });
    }
}

/// A value with where it was written.
pub type At<T> = (T, Range<usize>);

/// One host's part of a resource (`on NAME { … }`).
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub name: String,
    pub span: Range<usize>,
    pub device: Option<At<String>>,
    pub disk: Option<At<String>>,
    /// The address as written, split: (ip, port).
    pub address: Option<At<(String, Option<u16>)>>,
    /// `address;` with nothing after it.
    pub address_missing: Option<Range<usize>>,
    pub meta_disk: Option<At<String>>,
}

/// One `resource NAME { … }`, with `common { }` filled in where it said nothing.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub name: String,
    pub span: Range<usize>,
    pub protocol: Option<At<String>>,
    /// Bytes per second.
    pub rate: Option<At<u64>>,
    pub fencing: Option<At<String>>,
    pub hosts: Vec<Host>,
    /// Statements not carried over, as "section key" with their place.
    pub untranslated: Vec<At<String>>,
    /// `net { shared-secret …; cram-hmac-alg …; }`: the link's own authentication.
    pub shared_secret: Option<Range<usize>>,
    pub two_primaries: Option<Range<usize>>,
    /// `after-sb-*pri` policies.
    pub after_sb: Vec<Range<usize>>,
}

/// DRBD's rate: a number with an optional K/M/G (powers of 1024); bare, KiB/s.
pub fn rate(v: &str) -> Option<u64> {
    let (num, mult) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1u64 << 10),
        'm' | 'M' => (&v[..v.len() - 1], 1 << 20),
        'g' | 'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1 << 10),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// `ip:port`, `[v6]:port`, or with DRBD 8.4's family word before it.
fn address(words: &[(String, Range<usize>)]) -> Option<(String, Option<u16>)> {
    let v = match words.get(1)?.0.as_str() {
        "ipv4" | "ipv6" | "ssocks" | "sdp" | "sci" => &words.get(2)?.0,
        _ => &words[1].0,
    };
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.ends_with(':') => (h, p.parse().ok()),
        _ => (v.as_str(), None),
    };
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

/// The resources of a parsed drbd.conf; `include` lines and anything outside
/// `global`, `common` and `resource` are noted where they are.
pub fn read(file: &SourceFile, stmts: &[Stmt], notes: &mut Diagnostics) -> Vec<Resource> {
    let mut common = Resource::default();
    let mut out = Vec::new();
    for s in stmts {
        match (s.head(), &s.block) {
            ("global", Some(_)) => {}
            ("common", Some(b)) => section_body(&mut common, b, "common"),
            ("resource", Some(b)) => {
                let Some(name) = s.arg(1) else {
                    notes.error(
                        Location::at(file, s.span()),
                        "a resource without a name",
                        Some("write `resource r0 { … }`".into()),
                    );
                    continue;
                };
                let mut r = Resource {
                    name: name.to_string(),
                    span: s.words[1].1.clone(),
                    ..Resource::default()
                };
                section_body(&mut r, b, "resource");
                // DRBD takes from `common` what the resource does not say.
                r.protocol = r.protocol.or_else(|| common.protocol.clone());
                r.rate = r.rate.or_else(|| common.rate.clone());
                r.fencing = r.fencing.or_else(|| common.fencing.clone());
                r.shared_secret = r.shared_secret.or_else(|| common.shared_secret.clone());
                r.two_primaries = r.two_primaries.or_else(|| common.two_primaries.clone());
                if r.after_sb.is_empty() {
                    r.after_sb = common.after_sb.clone();
                }
                out.push(r);
            }
            ("include", _) => notes.warning(
                Location::at(file, s.span()),
                format!("`include {}` is not followed", s.arg(1).unwrap_or("")),
                Some("give each included file its own --drbd-conf".into()),
            ),
            _ => notes.warning(
                Location::at(file, s.span()),
                format!(
                    "`{}` is not a drbd.conf section pairbeat knows; not translated",
                    s.head()
                ),
                None,
            ),
        }
    }
    for (what, at) in &common.untranslated {
        notes.warning(
            Location::at(file, at.clone()),
            format!("drbd.conf `{what}` is not translated"),
            None,
        );
    }
    out
}

/// A resource's or `common`'s statements.
fn section_body(r: &mut Resource, body: &[Stmt], section: &str) {
    let mut defaults = Host::default();
    for s in body {
        let key = s.head();
        match (key, &s.block) {
            ("protocol", None) => r.protocol = s.arg(1).map(|p| (p.to_string(), s.words[1].1.clone())),
            ("on", Some(b)) => {
                let mut h = Host {
                    name: s.arg(1).unwrap_or_default().to_string(),
                    span: s.words.get(1).map_or(s.span(), |w| w.1.clone()),
                    ..Host::default()
                };
                for hs in b {
                    if !host_stmt(&mut h, hs) {
                        r.untranslated
                            .push((format!("on {} {{ {} }}", h.name, hs.head()), hs.span()));
                    }
                }
                r.hosts.push(h);
            }
            ("syncer" | "disk" | "net" | "startup" | "handlers" | "options", Some(b)) => {
                for k in b {
                    sub_stmt(r, key, k);
                }
            }
            (_, None) if host_stmt(&mut defaults, s) => {}
            _ => r.untranslated.push((format!("{section} {key}"), s.span())),
        }
    }
    // DRBD 8.4: device, disk, meta-disk at the resource level apply to every host.
    for h in &mut r.hosts {
        h.device = h.device.take().or_else(|| defaults.device.clone());
        h.disk = h.disk.take().or_else(|| defaults.disk.clone());
        h.meta_disk = h.meta_disk.take().or_else(|| defaults.meta_disk.clone());
    }
}

/// One statement inside `syncer`, `disk`, `net`, … of a resource.
fn sub_stmt(r: &mut Resource, section: &str, s: &Stmt) {
    let at = s.span();
    let value = || s.arg(1).map(str::to_string);
    match (section, s.head()) {
        ("syncer", "rate") | ("disk", "resync-rate") => {
            if let Some(v) = value().and_then(|v| rate(&v)) {
                r.rate = Some((v, at));
                return;
            }
        }
        ("disk", "fencing") => {
            if let Some(v) = value() {
                r.fencing = Some((v, at));
                return;
            }
        }
        ("net", "shared-secret" | "cram-hmac-alg") => {
            r.shared_secret = Some(at);
            return;
        }
        ("net", "allow-two-primaries") => {
            r.two_primaries = Some(at);
            return;
        }
        ("net", k) if k.starts_with("after-sb-") => {
            r.after_sb.push(at);
            return;
        }
        _ => {}
    }
    r.untranslated.push((format!("{section} {{ {} }}", s.head()), s.span()));
}

/// A host statement (`device`, `disk`, `address`, `meta-disk`); false if not one.
fn host_stmt(h: &mut Host, s: &Stmt) -> bool {
    if s.block.is_some() {
        return false;
    }
    let value = || s.words.get(1).map(|w| (w.0.clone(), w.1.clone()));
    match s.head() {
        "device" => h.device = value(),
        "disk" => h.disk = value(),
        "meta-disk" | "flexible-meta-disk" => {
            h.meta_disk = value().map(|(v, at)| {
                let idx = s.arg(2).map(|i| format!(" {i}")).unwrap_or_default();
                (format!("{v}{idx}"), at)
            })
        }
        "address" => match address(&s.words) {
            Some(a) => h.address = Some((a, s.words[1].1.clone())),
            None => h.address_missing = Some(s.span()),
        },
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Vec<Resource>, Diagnostics) {
        let f = SourceFile::new(std::path::Path::new("drbd.conf"), text.to_string());
        let mut d = Diagnostics::default();
        let stmts = parse(&f, &mut d);
        (read(&f, &stmts, &mut d), d)
    }

    #[test]
    fn a_resource_with_common_defaults_and_two_hosts() {
        let (rs, d) = load(
            "global { usage-count no; }\ncommon { syncer { rate 10M; } protocol B; }\n\
             resource r0 {\n  protocol C;\n  disk { fencing resource-only; }\n  net { cram-hmac-alg sha1; shared-secret\"x y\"; }\n\
             on alpha { device /dev/drbd0; disk /dev/sda4; address 10.0.0.1:7788; meta-disk internal; }\n\
             on bravo { device /dev/drbd0; disk /dev/sdb4; address ipv4 10.0.0.2:7788; flexible-meta-disk /dev/sdc1 [0]; }\n}\n",
        );
        assert!(d.items.is_empty(), "{d:?}");
        let r = &rs[0];
        assert_eq!(r.name, "r0");
        assert_eq!(r.protocol.as_ref().unwrap().0, "C", "the resource's own protocol wins");
        assert_eq!(r.rate.as_ref().unwrap().0, 10 << 20, "the rate from common");
        assert_eq!(r.fencing.as_ref().unwrap().0, "resource-only");
        assert!(r.shared_secret.is_some());
        assert_eq!(r.hosts.len(), 2);
        assert_eq!(
            r.hosts[1].address.as_ref().unwrap().0,
            ("10.0.0.2".to_string(), Some(7788))
        );
        assert_eq!(r.hosts[1].disk.as_ref().unwrap().0, "/dev/sdb4");
        assert_eq!(r.hosts[1].meta_disk.as_ref().unwrap().0, "/dev/sdc1 [0]");
    }

    #[test]
    fn rates_are_drbd_units() {
        assert_eq!(rate("100M"), Some(100 << 20));
        assert_eq!(rate("512k"), Some(512 << 10));
        assert_eq!(rate("1G"), Some(1 << 30));
        assert_eq!(rate("250"), Some(250 << 10), "a bare number is KiB/s");
        assert_eq!(rate("fast"), None);
    }

    #[test]
    fn an_unclosed_block_and_a_stray_brace_are_errors_at_their_place() {
        let (_, d) = load("resource r0 {\n  on alpha { disk /dev/sda1;\n}\n");
        let errs: Vec<_> = d
            .items
            .iter()
            .map(|i| (i.location.line_col, i.message.clone()))
            .collect();
        assert!(
            errs.iter()
                .any(|(at, m)| *at == Some((1, 1)) && m.contains("never closed")),
            "{errs:?}"
        );
        let (_, d) = load("}\nresource r0 { }\n");
        assert!(d
            .items
            .iter()
            .any(|i| i.message.contains("closes nothing") && i.location.line_col == Some((1, 1))));
    }

    #[test]
    fn an_empty_address_an_include_and_unknown_keys_are_reported_not_dropped() {
        let (rs, d) = load(
            "include \"drbd.d/*.res\";\nresource r0 { startup { wfc-timeout 0; } on a { address; disk /dev/x; } }\n",
        );
        assert!(rs[0].hosts[0].address_missing.is_some());
        assert!(rs[0].untranslated.iter().any(|(w, _)| w == "startup { wfc-timeout }"));
        assert!(d.items.iter().any(|i| i.message.contains("include")));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "{{{",
            "}}}",
            "\"unterminated",
            "resource",
            "resource {",
            "on x { address [::1]:; }",
            "#",
        ] {
            let _ = load(text);
        }
    }
}
