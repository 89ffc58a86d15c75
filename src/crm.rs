//! Pacemaker's attribute tools, as resource agents call them under pairbeat:
//! `crm_attribute`, `crm_master`, `attrd_updater` and `crm_node`. Agents written
//! for Pacemaker (DRBD's `ocf:linbit:drbd` above all) set their promotion score
//! with them; under pairbeat they reach pairbeatd's control socket instead of a
//! CIB, and the score becomes the resource's part of the promotion gate
//! ([`crate::attributes`]).
//!
//! pairbeatd gives every agent a directory of these names (symlinks to the
//! `pairbeat` executable, which dispatches on the name it was run as) as
//! `HA_SBIN_DIR` and first in `PATH`; the node's name, the resource and the
//! socket come as PAIRBEAT_NODE, OCF_RESOURCE_INSTANCE and PAIRBEAT_SOCKET.
//! Only this node's attributes are kept, for pairbeatd's life (every lifetime acts
//! as Pacemaker's `reboot`). The parser here is pure; [`main`] asks the daemon.

use std::path::PathBuf;

use crate::control::{client, Request};

/// The tools, by the names agents call.
pub const TOOLS: [&str; 4] = ["crm_attribute", "crm_master", "attrd_updater", "crm_node"];

/// Pacemaker's exit codes that agents look at.
pub const EX_OK: i32 = 0;
pub const EX_USAGE: i32 = 64;
pub const EX_UNAVAILABLE: i32 = 69;
pub const EX_NOSUCH: i32 = 105;

/// What a call asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Print the value; `default` if it is not set.
    Query {
        default: Option<String>,
    },
    Update(String),
    Delete,
}

/// One parsed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// An attribute of a node.
    Attribute {
        name: String,
        /// The node named with -N, if any (only this node's are kept).
        node: Option<String>,
        op: Op,
        /// Print the bare value (crm_attribute -q), or nothing on update (crm_master -Q).
        quiet: bool,
    },
    /// `crm_node -n`: this node's name.
    NodeName,
    /// `crm_node -p` / `-l`: the cluster's nodes (pairbeat knows its own name and
    /// asks the daemon for the peer's).
    Partition { list: bool },
    /// `crm_node -q`: quorum (two nodes: always 1, as Pacemaker's two_node).
    Quorum,
}

#[derive(Clone, Copy, PartialEq)]
enum Takes {
    Flag,
    Value,
    /// `--promotion[=RESOURCE]`: a value only with `=`.
    Optional,
}

type Spec = &'static [(char, &'static str, Takes)];

const CRM_ATTRIBUTE: Spec = &[
    ('n', "name", Takes::Value),
    ('v', "update", Takes::Value),
    ('D', "delete", Takes::Flag),
    ('G', "query", Takes::Flag),
    ('q', "quiet", Takes::Flag),
    ('Q', "quiet-update", Takes::Flag),
    ('l', "lifetime", Takes::Value),
    ('t', "type", Takes::Value),
    ('N', "node", Takes::Value),
    ('U', "uname", Takes::Value),
    ('d', "default", Takes::Value),
    ('p', "promotion", Takes::Optional),
    ('r', "resource", Takes::Value),
];

const ATTRD_UPDATER: Spec = &[
    ('n', "name", Takes::Value),
    ('U', "update", Takes::Value),
    ('v', "value", Takes::Value),
    ('D', "delete", Takes::Flag),
    ('Q', "query", Takes::Flag),
    ('N', "node", Takes::Value),
    ('d', "delay", Takes::Value),
    ('p', "private", Takes::Flag),
    ('q', "quiet", Takes::Flag),
    ('A', "all", Takes::Flag),
];

const CRM_NODE: Spec = &[
    ('n', "name", Takes::Flag),
    ('p', "partition", Takes::Flag),
    ('l', "list", Takes::Flag),
    ('q', "quorum", Takes::Flag),
];

/// The options given, by their short letter (the last of each wins, as getopt).
fn options(tool: &str, spec: Spec, args: &[String]) -> Result<Vec<(char, Option<String>)>, String> {
    let unknown = |a: &str| {
        let known: Vec<String> = spec.iter().map(|(s, l, _)| format!("-{s}/--{l}")).collect();
        format!(
            "{tool}: option {a} is not one pairbeat's {tool} knows (pairbeat is not Pacemaker; it keeps this node's attributes); known: {}",
            known.join(" ")
        )
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (key, inline) = match long.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (long, None),
            };
            let &(short, _, takes) = spec.iter().find(|(_, l, _)| *l == key).ok_or_else(|| unknown(a))?;
            let value = match (takes, inline) {
                (Takes::Flag, Some(_)) => return Err(format!("{tool}: --{key} takes no value")),
                (Takes::Flag, None) | (Takes::Optional, None) => None,
                (_, Some(v)) => Some(v),
                (Takes::Value, None) => {
                    let v = args.get(i).ok_or_else(|| format!("{tool}: --{key} needs a value"))?;
                    i += 1;
                    Some(v.clone())
                }
            };
            out.push((short, value));
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let chars: Vec<char> = shorts.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let &(_, long, takes) = spec
                    .iter()
                    .find(|(s, _, _)| *s == c)
                    .ok_or_else(|| unknown(&format!("-{c}")))?;
                match takes {
                    Takes::Flag | Takes::Optional => out.push((c, None)),
                    Takes::Value => {
                        let rest: String = chars[j..].iter().collect();
                        let v = if !rest.is_empty() {
                            rest
                        } else {
                            let v = args
                                .get(i)
                                .ok_or_else(|| format!("{tool}: -{c} (--{long}) needs a value"))?;
                            i += 1;
                            v.clone()
                        };
                        out.push((c, Some(v)));
                        j = chars.len();
                    }
                }
            }
        } else {
            return Err(format!("{tool}: unexpected argument `{a}` (options only)"));
        }
    }
    Ok(out)
}

fn last(opts: &[(char, Option<String>)], c: char) -> Option<Option<String>> {
    opts.iter().rev().find(|(k, _)| *k == c).map(|(_, v)| v.clone())
}

fn has(opts: &[(char, Option<String>)], c: char) -> bool {
    opts.iter().any(|(k, _)| *k == c)
}

/// Parses one call of `tool` (one of [`TOOLS`]); `instance` is the agent's
/// OCF_RESOURCE_INSTANCE (crm_master's and `--promotion`'s resource). The error
/// says what to write.
pub fn parse(tool: &str, args: &[String], instance: Option<&str>) -> Result<Call, String> {
    let promotion = |rsc: Option<String>| -> Result<String, String> {
        let rsc = rsc.or_else(|| instance.map(str::to_string)).ok_or_else(|| {
            format!("{tool}: no resource: a promotion score is set from an agent (OCF_RESOURCE_INSTANCE), or name it")
        })?;
        // Clone instance suffixes (`drbd0:1`) are Pacemaker's; the score is the resource's.
        let rsc = rsc.split(':').next().unwrap_or_default().to_string();
        Ok(crate::attributes::promotion_name(&rsc))
    };
    match tool {
        "crm_node" => {
            let o = options(tool, CRM_NODE, args)?;
            if has(&o, 'n') {
                Ok(Call::NodeName)
            } else if has(&o, 'q') {
                Ok(Call::Quorum)
            } else if has(&o, 'p') || has(&o, 'l') {
                Ok(Call::Partition { list: has(&o, 'l') })
            } else {
                Err("crm_node: give -n (this node's name), -p, -l or -q".into())
            }
        }
        "crm_attribute" | "crm_master" => {
            let o = options(tool, CRM_ATTRIBUTE, args)?;
            let name = if tool == "crm_master" {
                promotion(last(&o, 'r').flatten())?
            } else if let Some(p) = last(&o, 'p') {
                promotion(p.or(last(&o, 'r').flatten()))?
            } else {
                last(&o, 'n').flatten().ok_or_else(|| {
                    format!("{tool}: name the attribute with -n NAME (or --promotion for a promotion score)")
                })?
            };
            let modes = [has(&o, 'v'), has(&o, 'D'), has(&o, 'G')]
                .iter()
                .filter(|m| **m)
                .count();
            if modes > 1 {
                return Err(format!("{tool}: give one of -v VALUE, -D and -G"));
            }
            let op = if let Some(v) = last(&o, 'v').flatten() {
                Op::Update(v)
            } else if has(&o, 'D') {
                Op::Delete
            } else {
                Op::Query {
                    default: last(&o, 'd').flatten(),
                }
            };
            Ok(Call::Attribute {
                name,
                node: last(&o, 'N').or(last(&o, 'U')).flatten(),
                op,
                quiet: has(&o, 'q') || has(&o, 'Q'),
            })
        }
        "attrd_updater" => {
            let o = options(tool, ATTRD_UPDATER, args)?;
            if has(&o, 'A') {
                return Err(
                    "attrd_updater: -A (all nodes) is not kept by pairbeat: it keeps this node's attributes".into(),
                );
            }
            let name = last(&o, 'n')
                .flatten()
                .ok_or_else(|| "attrd_updater: name the attribute with -n NAME".to_string())?;
            let op = if let Some(v) = last(&o, 'U').or(last(&o, 'v')).flatten() {
                Op::Update(v)
            } else if has(&o, 'D') {
                Op::Delete
            } else if has(&o, 'Q') {
                Op::Query { default: None }
            } else {
                return Err("attrd_updater: give one of -U VALUE, -D and -Q".into());
            };
            Ok(Call::Attribute {
                name,
                node: last(&o, 'N').flatten(),
                op,
                quiet: has(&o, 'q'),
            })
        }
        other => Err(format!(
            "{other} is not one of pairbeat's Pacemaker tools ({})",
            TOOLS.join(", ")
        )),
    }
}

/// Runs a tool as the agent called it; the exit code, as Pacemaker's.
pub fn main(tool: &str, args: &[String]) -> i32 {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let call = match parse(tool, args, env("OCF_RESOURCE_INSTANCE").as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EX_USAGE;
        }
    };
    let me = env("PAIRBEAT_NODE").unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let socket = env("PAIRBEAT_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_SOCKET_PATH));
    match call {
        Call::NodeName => {
            println!("{me}");
            EX_OK
        }
        Call::Quorum => {
            println!("1");
            EX_OK
        }
        Call::Partition { list } => match client::request(&socket, &Request::Status) {
            Ok(r) => {
                let nodes: Vec<String> = r
                    .status
                    .map(|s| s.nodes.into_iter().map(|n| n.name).collect())
                    .unwrap_or_default();
                if list {
                    for (i, n) in nodes.iter().enumerate() {
                        println!("{} {n} member", i + 1);
                    }
                } else {
                    println!("{}", nodes.join(" "));
                }
                EX_OK
            }
            Err(e) => {
                eprintln!("{tool}: {e}");
                EX_UNAVAILABLE
            }
        },
        Call::Attribute { name, node, op, quiet } => {
            if let Some(n) = node.filter(|n| *n != me) {
                eprintln!("{tool}: pairbeat keeps this node's attributes only ({me}); {n}'s are its own pairbeatd's");
                return EX_USAGE;
            }
            let (value, delete) = match &op {
                Op::Update(v) => (Some(v.clone()), false),
                Op::Delete => (None, true),
                Op::Query { .. } => (None, false),
            };
            let req = Request::Attribute {
                name: name.clone(),
                value,
                delete,
            };
            match client::request(&socket, &req) {
                Ok(r) => match op {
                    Op::Query { default } => match r.message.or(default) {
                        Some(v) if quiet => {
                            println!("{v}");
                            EX_OK
                        }
                        Some(v) => {
                            println!("scope=status  name={name} value={v}");
                            EX_OK
                        }
                        None => {
                            eprintln!("Error performing operation: No such device or address");
                            EX_NOSUCH
                        }
                    },
                    _ => EX_OK,
                },
                // pairbeatd answered no: the call is at fault (a value that is not a score).
                Err(client::ClientError::Refused(why)) => {
                    eprintln!("{tool}: {why}");
                    EX_USAGE
                }
                Err(e) => {
                    eprintln!("{tool}: {e}");
                    EX_UNAVAILABLE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(tool: &str, args: &str) -> Result<Call, String> {
        let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        parse(tool, &args, Some("drbd0"))
    }

    fn attr(name: &str, op: Op, quiet: bool) -> Call {
        Call::Attribute {
            name: name.into(),
            node: None,
            op,
            quiet,
        }
    }

    #[test]
    fn linbit_drbd_calls_parse() {
        // The three calls ocf:linbit:drbd makes.
        assert_eq!(
            p("crm_master", "-q -l reboot -G"),
            Ok(attr("master-drbd0", Op::Query { default: None }, true))
        );
        assert_eq!(
            p("crm_master", "-Q -l reboot -v 10000"),
            Ok(attr("master-drbd0", Op::Update("10000".into()), true))
        );
        assert_eq!(
            p("crm_master", "-l reboot -D"),
            Ok(attr("master-drbd0", Op::Delete, false))
        );
    }

    #[test]
    fn ocf_shellfuncs_and_pacemaker_stateful_calls_parse() {
        // ocf_promotion_score: crm_attribute -p "$@"; Stateful: --promotion -v 10.
        assert_eq!(
            p("crm_attribute", "-p -v 5"),
            Ok(attr("master-drbd0", Op::Update("5".into()), false))
        );
        assert_eq!(
            p("crm_attribute", "--promotion=other:1 --update=-INFINITY"),
            Ok(attr("master-other", Op::Update("-INFINITY".into()), false))
        );
        assert_eq!(
            p("crm_attribute", "-N alpha -n pingd -l reboot -G -q -d 0"),
            Ok(Call::Attribute {
                name: "pingd".into(),
                node: Some("alpha".into()),
                op: Op::Query {
                    default: Some("0".into())
                },
                quiet: true,
            })
        );
        assert_eq!(
            p("crm_attribute", "-qGnpingd"),
            Ok(attr("pingd", Op::Query { default: None }, true))
        );
        assert_eq!(
            p("attrd_updater", "-n pingd -U 100 -d 5s"),
            Ok(attr("pingd", Op::Update("100".into()), false))
        );
        assert_eq!(p("attrd_updater", "-n pingd -D"), Ok(attr("pingd", Op::Delete, false)));
        assert_eq!(p("crm_node", "-n"), Ok(Call::NodeName));
        assert_eq!(p("crm_node", "-q"), Ok(Call::Quorum));
        assert_eq!(p("crm_node", "-l"), Ok(Call::Partition { list: true }));
    }

    #[test]
    fn bad_calls_say_what_to_write() {
        for (tool, args, says) in [
            ("crm_attribute", "-G", "-n NAME"),
            ("crm_attribute", "-n x -v 1 -D", "one of -v VALUE, -D and -G"),
            ("crm_attribute", "-n x --lifetime", "--lifetime needs a value"),
            (
                "crm_attribute",
                "-n x -z",
                "option -z is not one pairbeat's crm_attribute knows",
            ),
            ("crm_attribute", "--cib-file=x -n a", "--cib-file"),
            ("crm_attribute", "-n x stray", "unexpected argument `stray`"),
            ("crm_attribute", "--delete=yes -n x", "--delete takes no value"),
            ("attrd_updater", "-n x", "one of -U VALUE"),
            ("attrd_updater", "-A -Q -n x", "this node's attributes"),
            ("crm_node", "", "give -n"),
            ("crm_resource", "--locate", "not one of pairbeat's Pacemaker tools"),
        ] {
            let e = p(tool, args).unwrap_err();
            assert!(e.contains(says), "{tool} {args}: {e}");
        }
        let args: Vec<String> = vec!["-v".into(), "1".into()];
        let e = parse("crm_master", &args, None).unwrap_err();
        assert!(e.contains("OCF_RESOURCE_INSTANCE"), "{e}");
    }
}
