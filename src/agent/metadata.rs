//! OCF meta-data: the parameters an agent takes and the timeouts it advises
//! (the OCF Resource Agent API 1.1, "meta-data"), read from the XML its `meta-data` action prints.

use std::time::Duration;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::config::OpName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub required: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaData {
    pub parameters: Vec<Parameter>,
    /// Advised timeouts by op; for monitor, the first one listed.
    pub timeouts: Vec<(OpName, Duration)>,
}

/// Parses meta-data XML; the error says what is wrong with it.
pub fn parse(xml: &str) -> Result<MetaData, String> {
    let mut reader = Reader::from_str(xml);
    let mut md = MetaData::default();
    let mut seen_root = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().0 {
                "resource-agent" => seen_root = true,
                "parameter" => {
                    let name = attr(&e, "name")?.ok_or("a <parameter> without name")?;
                    let required = attr(&e, "required")?.is_some_and(|v| v == "1" || v == "true");
                    md.parameters.push(Parameter { name, required });
                }
                "action" => {
                    let Some(name) = attr(&e, "name")? else { continue };
                    let Some(op) = OpName::parse(&name) else { continue };
                    if md.timeouts.iter().any(|(n, _)| *n == op) {
                        continue;
                    }
                    if let Some(t) = attr(&e, "timeout")? {
                        if let Some(d) = ocf_duration(&t) {
                            md.timeouts.push((op, d));
                        }
                    }
                }
                _ => {}
            },
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("meta-data is not well-formed XML: {e}")),
        }
    }
    if !seen_root {
        return Err("meta-data has no <resource-agent> element".into());
    }
    Ok(md)
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    match e.try_get_attribute(name) {
        Ok(Some(a)) => a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| Some(v.into_owned()))
            .map_err(|e| format!("bad attribute {name}: {e}")),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("bad attribute {name}: {e}")),
    }
}

/// OCF times: "20s", "2m", "1h", "100ms", or plain seconds ("20").
fn ocf_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "" | "s" => n.checked_mul(1000)?,
        "ms" => n,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    // A time past a week is no agent's real timeout: ignored as unreadable, so
    // that the configured or default one applies (found by fuzzing: "7777…s"
    // overflowed here, and an Instant plus such a timeout would panic).
    (ms <= MAX_TIMEOUT_MS).then(|| Duration::from_millis(ms))
}

/// The longest operation timeout taken from an agent's meta-data: a week.
const MAX_TIMEOUT_MS: u64 = 7 * 86_400_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: "7777…s" overflowed; a time past a week is ignored.
    #[test]
    fn huge_timeouts_are_unreadable_not_an_overflow() {
        assert_eq!(ocf_duration("20s"), Some(Duration::from_secs(20)));
        assert_eq!(ocf_duration("2d"), Some(Duration::from_secs(2 * 86400)));
        assert_eq!(ocf_duration("7777777777777777777s"), None);
        assert_eq!(ocf_duration("18446744073709551615h"), None);
        assert_eq!(ocf_duration("8d"), None);
    }

    const SAMPLE: &str = r#"<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="namenode" version="0.1">
  <version>1.0</version>
  <longdesc lang="en">x</longdesc><shortdesc lang="en">x</shortdesc>
  <parameters>
    <parameter name="conf" unique="1" required="1"><content type="string" default="/etc/hadoop"/></parameter>
    <parameter name="user"><content type="string"/></parameter>
  </parameters>
  <actions>
    <action name="start" timeout="60s"/>
    <action name="stop" timeout="2m"/>
    <action name="monitor" timeout="20" interval="10s" depth="0"/>
    <action name="monitor" timeout="30s" interval="5s" role="Master"/>
    <action name="meta-data" timeout="5s"/>
  </actions>
</resource-agent>"#;

    #[test]
    fn reads_parameters_and_timeouts() {
        let md = parse(SAMPLE).unwrap();
        assert_eq!(
            md.parameters,
            vec![
                Parameter {
                    name: "conf".into(),
                    required: true
                },
                Parameter {
                    name: "user".into(),
                    required: false
                }
            ]
        );
        assert_eq!(
            md.timeouts,
            vec![
                (OpName::Start, Duration::from_secs(60)),
                (OpName::Stop, Duration::from_secs(120)),
                (OpName::Monitor, Duration::from_secs(20))
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("").unwrap_err().contains("no <resource-agent>"));
        assert!(parse("<resource-agent><parameter required=\"1\"/></resource-agent>")
            .unwrap_err()
            .contains("without name"));
        assert!(parse("<a><b></a>").is_err());
    }
}
