//! TOML text → `RawConfig`, reporting every syntax and structure error, not just the first.
//!
//! serde stops at the first error it meets. To report all of them we parse the file
//! once into toml's spanned document tree, then deserialize repeatedly: after each
//! error we record it, cut the innermost key that contains the error's position out
//! of the tree, and try again. Each round removes one key, so this ends; a file with
//! N independent mistakes costs N+1 rounds over a tree of a few hundred nodes.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, Deserializer};
use toml::Spanned;

use super::diag::{closest, Diagnostics, Location, SourceFile};
use super::raw::RawConfig;

/// A key that was cut from the tree because its value did not fit the schema.
#[derive(Debug, Clone)]
pub struct CutKey {
    pub name: String,
    /// Span of the table that held it (its header), so `validate` does not also call it "missing".
    pub table: Range<usize>,
    /// "[timing]", "[[group.resource]]", … for messages.
    pub table_name: String,
}

/// The result of phase one: as much of the file as could be read, and what could not.
pub struct Parsed {
    pub raw: RawConfig,
    pub cut: Vec<CutKey>,
}

/// A bound on retries, far above any real file's number of mistakes.
const MAX_ROUNDS: usize = 200;

/// `None` when the TOML itself is broken: then only the syntax errors are reported.
pub fn parse(file: &SourceFile, diags: &mut Diagnostics) -> Option<Parsed> {
    let (mut tree, syntax_errors) = DeTable::parse_recoverable(&file.text);
    for e in &syntax_errors {
        let span = e.span().unwrap_or(0..0);
        diags.error(
            Location::at(file, span),
            format!("TOML syntax: {}", first_line(e.message())),
            None,
        );
    }
    if !syntax_errors.is_empty() {
        // A broken document tree would give misleading follow-up errors.
        return None;
    }
    tree.get_mut().make_owned();

    let mut cut = Vec::new();
    cut_placeholders(file, tree.get_mut(), 0..0, diags, &mut cut);
    for _ in 0..MAX_ROUNDS {
        let attempt = RawConfig::deserialize(Deserializer::from(tree.clone()));
        let err = match attempt {
            Ok(raw) => return Some(Parsed { raw, cut }),
            Err(e) => e,
        };
        let span = err.span().unwrap_or(0..0);
        match cut_innermost(tree.get_mut(), &span) {
            Some(key) => {
                report(file, diags, err.message(), &key, span);
                cut.push(key);
            }
            None => {
                // Nothing left to cut: report and give up on the structure.
                diags.error(Location::at(file, span), first_line(err.message()), None);
                break;
            }
        }
    }
    None
}

/// Is this string a `<...>` placeholder written by `pairbeat config import`?
pub fn is_placeholder(s: &str) -> bool {
    // By chars, not bytes: a multi-byte character after `<` once panicked here
    // (found by fuzzing).
    s.len() > 2 && s.starts_with('<') && s.ends_with('>') && s.chars().nth(1).is_some_and(|c| c.is_ascii_uppercase())
}

/// Reports and removes every placeholder string, so an unfinished import cannot pass
/// for a finished one and later checks do not also call the value malformed.
fn cut_placeholders(
    file: &SourceFile,
    table: &mut DeTable<'_>,
    table_span: Range<usize>,
    diags: &mut Diagnostics,
    cut: &mut Vec<CutKey>,
) {
    let mut doomed = Vec::new();
    for (k, v) in table.iter_mut() {
        let span = v.span();
        let placeholder = match v.get_mut() {
            DeValue::String(s) => is_placeholder(s),
            DeValue::Table(t) => {
                cut_placeholders(file, t, span.clone(), diags, cut);
                false
            }
            DeValue::Array(items) => {
                let mut found = false;
                for item in items.iter_mut() {
                    let s = item.span();
                    match item.get_mut() {
                        DeValue::Table(t) => cut_placeholders(file, t, s, diags, cut),
                        DeValue::String(text) if is_placeholder(text) => {
                            diags.error(
                                Location::at(file, s),
                                format!("{text} is a placeholder left by `pairbeat config import`"),
                                Some("replace it with the real value".into()),
                            );
                            found = true;
                        }
                        _ => {}
                    }
                }
                found
            }
            _ => false,
        };
        if placeholder {
            if let DeValue::String(text) = v.get_ref() {
                diags.error(
                    Location::at(file, span),
                    format!(
                        "`{}` is still the placeholder {text} left by `pairbeat config import`",
                        k.get_ref()
                    ),
                    Some("replace it with the real value".into()),
                );
            }
            doomed.push(k.get_ref().to_string());
        }
    }
    for name in doomed {
        table.remove(name.as_str());
        cut.push(CutKey {
            name,
            table: table_span.clone(),
            table_name: String::new(),
        });
    }
}

/// Turns serde's message into ours, adding a suggestion for misspelt keys.
fn report(file: &SourceFile, diags: &mut Diagnostics, message: &str, key: &CutKey, span: Range<usize>) {
    let message = first_line(message);
    let table = &key.table_name;
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // serde's wording: "unknown field `x`, expected one of `a`, `b`" / "expected `a`".
        let known: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        let help = match closest(&key.name, known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None if known.is_empty() => format!("{table} takes no keys"),
            None => format!("known keys in {table}: {}", known.join(", ")),
        };
        diags.error(
            Location::at(file, span),
            format!("unknown key `{}` in {table}", key.name),
            Some(help),
        );
    } else {
        diags.error(
            Location::at(file, span),
            format!("`{}` in {table}: {message}", key.name),
            Some(type_help(&key.name)),
        );
    }
}

/// A hint for the common type mistakes, phrased for the key at hand.
fn type_help(key: &str) -> String {
    match key {
        "node" | "link" => format!("write each {key} as its own [[{key}]] table"),
        "resource" => "write each resource as a [[group.resource]] table".into(),
        "op" => "write ops as op = [{ name = \"monitor\", interval = \"10s\" }]".into(),
        _ => "see etc/pairbeat.toml for the expected form of this key".into(),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// One step from a table down to a nested value.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Removes the innermost table entry whose key or value contains `span`; returns what was cut.
///
/// Table values carry only their header's span, not their body's, so the search
/// visits every entry rather than descending by containment.
fn cut_innermost(root: &mut DeTable<'_>, span: &Range<usize>) -> Option<CutKey> {
    let mut best: Option<(Vec<Step>, Range<usize>)> = None;
    let mut path = Vec::new();
    find_deepest(root, 0..0, span, &mut path, &mut best);
    let (path, table_span) = best?;
    let (last, parents) = path.split_last()?;
    let Step::Key(name) = last else { return None };
    let table = navigate(root, parents)?;
    table.remove(name.as_str());
    Some(CutKey {
        name: name.clone(),
        table: table_span,
        table_name: table_label(parents),
    })
}

fn find_deepest(
    table: &DeTable<'_>,
    table_span: Range<usize>,
    span: &Range<usize>,
    path: &mut Vec<Step>,
    best: &mut Option<(Vec<Step>, Range<usize>)>,
) {
    for (k, v) in table.iter() {
        path.push(Step::Key(k.get_ref().to_string()));
        let leaf = !matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_));
        let hit = contains(&k.span(), span) || (leaf && contains(&v.span(), span)) || array_hit(v, span);
        if hit && best.as_ref().is_none_or(|(p, _)| p.len() <= path.len()) {
            *best = Some((path.clone(), table_span.clone()));
        }
        match v.get_ref() {
            DeValue::Table(t) => find_deepest(t, v.span(), span, path, best),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        path.push(Step::Index(i));
                        find_deepest(t, item.span(), span, path, best);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// An array of scalars (e.g. `args = [1, 2]`) is cut whole when one element is wrong.
fn array_hit(v: &Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    match v.get_ref() {
        DeValue::Array(items) => {
            contains(&v.span(), span)
                || items
                    .iter()
                    .any(|i| !matches!(i.get_ref(), DeValue::Table(_)) && contains(&i.span(), span))
        }
        _ => false,
    }
}

fn navigate<'a, 'i>(mut table: &'a mut DeTable<'i>, steps: &[Step]) -> Option<&'a mut DeTable<'i>> {
    let mut i = 0;
    while i < steps.len() {
        let Step::Key(k) = &steps[i] else { return None };
        let value = table.get_mut(k.as_str())?.get_mut();
        table = match (value, steps.get(i + 1)) {
            (DeValue::Array(items), Some(Step::Index(n))) => {
                i += 1;
                match items.get_mut(*n)?.get_mut() {
                    DeValue::Table(t) => t,
                    _ => return None,
                }
            }
            (DeValue::Table(t), _) => t,
            _ => return None,
        };
        i += 1;
    }
    Some(table)
}

/// "[timing]", "[[group.resource]]", "[link.address]" or "the top level", for messages.
fn table_label(steps: &[Step]) -> String {
    let keys: Vec<&str> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    match steps.last() {
        None => "the top level".into(),
        Some(Step::Index(_)) => format!("[[{}]]", keys.join(".")),
        Some(Step::Key(_)) => format!("[{}]", keys.join(".")),
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    // An empty span (the root table's) contains nothing but empty spans.
    (inner.is_empty() || !outer.is_empty()) && outer.start <= inner.start && inner.end <= outer.end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Parsed, Diagnostics) {
        let f = SourceFile::new("t.toml", text);
        let mut d = Diagnostics::default();
        let p = parse(&f, &mut d).unwrap_or(Parsed {
            raw: RawConfig::default(),
            cut: Vec::new(),
        });
        (p, d)
    }

    /// Found by fuzzing: a multi-byte character after `<` panicked (a byte slice).
    #[test]
    fn a_placeholder_check_reads_characters_not_bytes() {
        assert!(is_placeholder("<VIRTUAL IP>"));
        assert!(!is_placeholder("<\u{c1}DDRESS>"));
        assert!(!is_placeholder("<é>"));
        assert!(!is_placeholder("<>"));
    }

    #[test]
    fn reports_every_unknown_key_with_suggestion() {
        let (p, d) = run("[timing]\nkeepliave = \"1s\"\ndeadtime = \"5s\"\n[daemon]\nsockt = \"/x\"\n");
        let text = d.to_string();
        assert_eq!(d.error_count(), 2, "{text}");
        assert!(
            text.contains("t.toml:2:1: error: unknown key `keepliave` in [timing]"),
            "{text}"
        );
        assert!(text.contains("did you mean `keepalive`?"), "{text}");
        assert!(
            text.contains("t.toml:5:1: error: unknown key `sockt` in [daemon]"),
            "{text}"
        );
        assert!(text.contains("did you mean `socket`?"), "{text}");
        // What was right is kept for phase two.
        let timing = p.raw.timing.unwrap();
        assert!(timing.get_ref().deadtime.is_some());
        assert_eq!(p.cut.len(), 2);
    }

    #[test]
    fn unknown_top_level_table_is_reported() {
        let (_, d) = run("[timming]\nkeepalive = \"1s\"\n");
        let text = d.to_string();
        assert!(text.contains("unknown key `timming` in the top level"), "{text}");
        assert!(text.contains("did you mean `timing`?"), "{text}");
    }

    #[test]
    fn wrong_type_inside_array_of_tables_cuts_only_that_key() {
        let (p, d) =
            run("[group]\n[[group.resource]]\nid = \"a\"\npromotable = \"yes\"\n[[group.resource]]\nid = \"b\"\n");
        let text = d.to_string();
        assert_eq!(d.error_count(), 1, "{text}");
        assert!(
            text.contains("t.toml:4:14: error: `promotable` in [[group.resource]]"),
            "{text}"
        );
        let group = p.raw.group.unwrap().into_inner();
        assert_eq!(group.resource.unwrap().into_inner().len(), 2);
    }

    #[test]
    fn import_placeholders_are_refused_once_each() {
        let (p, d) = run("[[link]]\ninterface = \"<INTERFACE>\"\nkind = \"ucast\"\n");
        let text = d.to_string();
        assert_eq!(d.error_count(), 1, "{text}");
        assert!(
            text.contains("t.toml:2:13: error: `interface` is still the placeholder <INTERFACE>"),
            "{text}"
        );
        assert_eq!(p.cut[0].name, "interface");
        assert!(!is_placeholder("<html>"));
    }

    #[test]
    fn syntax_errors_are_all_reported_with_position() {
        let (_, d) = run("[timing\nkeepalive = \n");
        assert!(d.error_count() >= 1);
        assert!(d.to_string().starts_with("t.toml:1:"), "{d}");
    }
}
