//! Heartbeat's STONITH plugins as fence-agents devices, for `config import`: which
//! fence agent does a plugin's job, and what its positional `stonith_host`
//! parameters are called there. The table is also in docs/operator-guide.md ("Coming from Heartbeat").
//!
//! `stonith_host HOSTFROM TYPE PARAMS...` names a device and the node that can
//! reach it (`*`: either). Two kinds of device: one per node to be fenced (IPMI,
//! iLO, DRAC: the line names the node it resets), whose parameters go under
//! `[fence.node.NAME]`; and a power switch shared by both (APC, WTI), whose
//! parameters are common and whose outlet per node Heartbeat read from the device
//! itself (pairbeat asks for it: `plug`).

/// Where a plugin's parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// The node this device resets (per-node devices).
    Node,
    /// A fence-agents parameter of this name.
    Named(&'static str),
    /// IPMI's interface: `lanplus` turns on fence_ipmilan's `lanplus`.
    Lanplus,
}

/// One plugin's translation.
#[derive(Debug)]
pub struct Plugin {
    /// Heartbeat's name (`stonith -L`).
    pub heartbeat: &'static str,
    /// The fence-agents program.
    pub agent: &'static str,
    /// Its `stonith_host` parameters in order.
    pub params: &'static [Param],
    /// A power switch shared by both nodes: each node's outlet is asked for.
    pub switch: bool,
}

use Param::*;

/// Plugins with a fence-agents equivalent.
pub const PLUGINS: &[Plugin] = &[
    Plugin {
        heartbeat: "external/ipmi",
        agent: "fence_ipmilan",
        params: &[Node, Named("ip"), Named("username"), Named("password"), Lanplus],
        switch: false,
    },
    Plugin {
        heartbeat: "ipmilan",
        agent: "fence_ipmilan",
        params: &[
            Node,
            Named("ip"),
            Named("ipport"),
            Named("auth"),
            Named("privlvl"),
            Named("username"),
            Named("password"),
        ],
        switch: false,
    },
    Plugin {
        heartbeat: "external/riloe",
        agent: "fence_ilo",
        params: &[Node, Named("ip"), Named("username"), Named("password")],
        switch: false,
    },
    Plugin {
        heartbeat: "riloe",
        agent: "fence_ilo",
        params: &[Node, Named("ip"), Named("username"), Named("password")],
        switch: false,
    },
    Plugin {
        heartbeat: "external/drac5",
        agent: "fence_drac5",
        params: &[Node, Named("ip"), Named("username"), Named("password")],
        switch: false,
    },
    Plugin {
        heartbeat: "apcmaster",
        agent: "fence_apc",
        params: &[Named("ip"), Named("username"), Named("password")],
        switch: true,
    },
    Plugin {
        heartbeat: "apcmastersnmp",
        agent: "fence_apc_snmp",
        params: &[Named("ip"), Named("ipport"), Named("community")],
        switch: true,
    },
    Plugin {
        heartbeat: "wti_nps",
        agent: "fence_wti",
        params: &[Named("ip"), Named("password")],
        switch: true,
    },
];

/// Plugins with no fence-agents equivalent, with why.
pub const NO_EQUIVALENT: &[(&str, &str)] = &[
    ("null", "a test plugin that fences nothing"),
    ("ssh", "a test plugin (reboot over ssh), not a fencing device"),
    ("external/ssh", "a test plugin (reboot over ssh), not a fencing device"),
    (
        "suicide",
        "a node cannot fence itself; pairbeat's tie-break stops a cut-off group instead",
    ),
    (
        "meatware",
        "an operator confirming by hand; use `pairbeat resolve` after a stop-both split brain",
    ),
    (
        "external/xen0",
        "no fence-agents equivalent for Xen dom0; fence_xvm covers libvirt hosts",
    ),
];

/// The translation of `heartbeat`, if there is one.
pub fn plugin(heartbeat: &str) -> Option<&'static Plugin> {
    PLUGINS.iter().find(|p| p.heartbeat == heartbeat)
}

/// One `stonith_host` line in fence-agents terms: the node it resets (per-node
/// devices only) and the `(name, value)` parameters.
pub type Device = (Option<String>, Vec<(String, String)>);

/// The fence-agents parameters of one `stonith_host` line. `Err` says what is wrong
/// with the line.
pub fn params(p: &Plugin, values: &[&str]) -> Result<Device, String> {
    let wanted = p.params.iter().filter(|x| **x != Lanplus).count();
    if values.len() < wanted || values.len() > p.params.len() {
        let names: Vec<&str> = p
            .params
            .iter()
            .map(|x| match x {
                Node => "hostname",
                Named(n) => n,
                Lanplus => "[interface]",
            })
            .collect();
        return Err(format!(
            "{} takes {} parameter{} ({}), this line has {}",
            p.heartbeat,
            if wanted == p.params.len() {
                wanted.to_string()
            } else {
                format!("{wanted} or {}", p.params.len())
            },
            if p.params.len() == 1 { "" } else { "s" },
            names.join(" "),
            values.len()
        ));
    }
    let mut node = None;
    let mut out = Vec::new();
    for (kind, v) in p.params.iter().zip(values) {
        match kind {
            Node => node = Some(v.to_string()),
            Named(n) => out.push((n.to_string(), v.to_string())),
            Lanplus => {
                if v.eq_ignore_ascii_case("lanplus") {
                    out.push(("lanplus".into(), "1".into()));
                }
            }
        }
    }
    Ok((node, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipmi_lines_name_the_node_and_lanplus() {
        let p = plugin("external/ipmi").unwrap();
        let (node, params) = params(p, &["bravo", "10.0.0.12", "admin", "pw", "lanplus"]).unwrap();
        assert_eq!(node.as_deref(), Some("bravo"));
        assert_eq!(
            params,
            [
                ("ip", "10.0.0.12"),
                ("username", "admin"),
                ("password", "pw"),
                ("lanplus", "1")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let (_, params) = params_of("external/ipmi", &["bravo", "10.0.0.12", "admin", "pw", "lan"]);
        assert!(!params.iter().any(|(k, _)| k == "lanplus"));
        let (_, params) = params_of("external/ipmi", &["bravo", "10.0.0.12", "admin", "pw"]);
        assert_eq!(params.len(), 3);
    }

    fn params_of(name: &str, v: &[&str]) -> Device {
        params(plugin(name).unwrap(), v).unwrap()
    }

    #[test]
    fn a_wrong_count_says_what_the_plugin_takes() {
        let e = params(plugin("apcmaster").unwrap(), &["10.0.0.3", "apc"]).unwrap_err();
        assert_eq!(
            e,
            "apcmaster takes 3 parameters (ip username password), this line has 2"
        );
        let e = params(plugin("external/ipmi").unwrap(), &["a", "b", "c"]).unwrap_err();
        assert!(e.starts_with("external/ipmi takes 4 or 5 parameters"), "{e}");
    }

    #[test]
    fn every_plugin_has_one_translation() {
        let mut names: Vec<&str> = PLUGINS.iter().map(|p| p.heartbeat).collect();
        names.extend(NO_EQUIVALENT.iter().map(|(n, _)| *n));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a plugin is listed twice");
        for p in PLUGINS {
            assert_eq!(p.switch, !p.params.contains(&Node), "{}", p.heartbeat);
        }
    }
}
