//! Heartbeat messages: an ordered list of typed `name=value` fields, and the two
//! encodings Heartbeat 3 uses on the wire (Heartbeat 3.0.6 lib/clplumbing/cl_msg*.c):
//!
//! - netstring: `###\n` + `<len>:(<type>)name=value,` per field + `%%%\n`
//!   (what Heartbeat 3.0.6 always sends; binary values raw);
//! - classic: `>>>\n` + `name=value\n` per field + `<<<\n`, non-string fields
//!   written `(<type>)name=<base64>` (older senders; also the text the inner
//!   `auth` digest is computed over).
//!
//! Decoding is strict and total: any input gives a `Message` or a `WireError`,
//! never a panic (property-tested and fuzzed). Values of nested types (struct,
//! list, compressed) are kept as raw bytes so re-encoding is byte-exact.

use base64::Engine as _;

use super::WireError;

pub const NETSTRING_HEAD: &[u8] = b"###\n";
pub const NETSTRING_TAIL: &[u8] = b"%%%\n";
pub const CLASSIC_HEAD: &[u8] = b">>>\n";
pub const CLASSIC_TAIL: &[u8] = b"<<<\n";

/// More fields than any real Heartbeat message carries (a status packet has 12).
pub const MAX_FIELDS: usize = 256;

/// Heartbeat's field type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Binary,
    /// Struct, list, compressed, uncompressed: carried opaquely.
    Other(u8),
}

impl FieldType {
    fn code(self) -> u8 {
        match self {
            FieldType::String => 0,
            FieldType::Binary => 1,
            FieldType::Other(c) => c,
        }
    }

    fn from_code(c: u8) -> Result<Self, WireError> {
        match c {
            0 => Ok(FieldType::String),
            1 => Ok(FieldType::Binary),
            2..=5 => Ok(FieldType::Other(c)),
            _ => Err(WireError::Malformed("unknown field type")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub kind: FieldType,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<Field>,
}

impl Message {
    pub fn new() -> Self {
        Message::default()
    }

    pub fn add_str(&mut self, name: &str, value: &str) -> &mut Self {
        self.fields.push(Field {
            name: name.into(),
            kind: FieldType::String,
            value: value.as_bytes().to_vec(),
        });
        self
    }

    pub fn add_bin(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.fields.push(Field {
            name: name.into(),
            kind: FieldType::Binary,
            value: value.to_vec(),
        });
        self
    }

    /// The first string field of that name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name && f.kind == FieldType::String)
            .and_then(|f| std::str::from_utf8(&f.value).ok())
    }

    pub fn get_bin(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.value.as_slice())
    }

    /// A field holding lowercase hex (Heartbeat's `seq`, `hg`, `ts`, `dt`).
    pub fn get_hex(&self, name: &str) -> Option<u64> {
        let v = self.get(name)?;
        if v.is_empty() || v.len() > 16 {
            return None;
        }
        u64::from_str_radix(v, 16).ok()
    }

    /// The netstring body, `###\n` through `%%%\n`.
    pub fn encode_netstring(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .fields
                .iter()
                .map(|f| f.value.len() + f.name.len() + 8)
                .sum::<usize>(),
        );
        out.extend_from_slice(NETSTRING_HEAD);
        for f in &self.fields {
            let head = format!("({}){}=", f.kind.code(), f.name);
            out.extend_from_slice(format!("{}:", head.len() + f.value.len()).as_bytes());
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(&f.value);
            out.push(b',');
        }
        out.extend_from_slice(NETSTRING_TAIL);
        out
    }

    /// The classic text of all fields but `skip`, without `>>>`/`<<<`: what the
    /// inner `auth` digest covers.
    pub fn classic_text(&self, skip: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        for f in self.fields.iter().filter(|f| Some(f.name.as_str()) != skip) {
            match f.kind {
                FieldType::String => {
                    out.extend_from_slice(f.name.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(&f.value);
                }
                kind => {
                    out.extend_from_slice(format!("({}){}=", kind.code(), f.name).as_bytes());
                    out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(&f.value).as_bytes());
                }
            }
            out.push(b'\n');
        }
        out
    }

    /// Decodes a netstring body (`###\n` … `%%%\n`, exactly).
    pub fn decode_netstring(body: &[u8]) -> Result<Message, WireError> {
        let inner = body
            .strip_prefix(NETSTRING_HEAD)
            .and_then(|b| b.strip_suffix(NETSTRING_TAIL))
            .ok_or(WireError::Malformed("not a ###…%%% message"))?;
        let mut msg = Message::new();
        let mut rest = inner;
        while !rest.is_empty() {
            let (item, after) = take_netstring(rest)?;
            rest = after;
            if msg.fields.len() == MAX_FIELDS {
                return Err(WireError::Malformed("too many fields"));
            }
            msg.fields.push(parse_field(item)?);
        }
        Ok(msg)
    }

    /// Decodes a classic message (`>>>\n` … `<<<\n`).
    pub fn decode_classic(data: &[u8]) -> Result<Message, WireError> {
        let inner = data
            .strip_prefix(CLASSIC_HEAD)
            .and_then(|b| b.strip_suffix(CLASSIC_TAIL))
            .ok_or(WireError::Malformed("not a >>>…<<< message"))?;
        let mut msg = Message::new();
        for line in inner.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            if msg.fields.len() == MAX_FIELDS {
                return Err(WireError::Malformed("too many fields"));
            }
            let mut field = parse_field_text(line)?;
            if field.kind != FieldType::String {
                field.value = base64::engine::general_purpose::STANDARD
                    .decode(&field.value)
                    .map_err(|_| WireError::Malformed("bad base64 in a binary field"))?;
            }
            msg.fields.push(field);
        }
        Ok(msg)
    }
}

/// Splits `<len>:<bytes>,` off the front of `data`.
pub(super) fn take_netstring(data: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let colon = data
        .iter()
        .take(8)
        .position(|&b| b == b':')
        .ok_or(WireError::Malformed("netstring without length"))?;
    let digits = &data[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(WireError::Malformed("netstring length is not a number"));
    }
    // At most 7 digits (take(8) above), so this neither overflows nor panics.
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(WireError::Malformed("netstring length"))?;
    let start = colon + 1;
    let end = start.checked_add(len).ok_or(WireError::Truncated)?;
    if data.len() <= end {
        return Err(WireError::Truncated);
    }
    if data[end] != b',' {
        return Err(WireError::Malformed("netstring not terminated by ','"));
    }
    Ok((&data[start..end], &data[end + 1..]))
}

/// `(<type>)name=value` as raw bytes.
fn parse_field(item: &[u8]) -> Result<Field, WireError> {
    if !item.starts_with(b"(") {
        return Err(WireError::Malformed("netstring field without (type)"));
    }
    parse_field_text(item)
}

/// `[(<type>)]name=value`; the type defaults to string (classic form).
fn parse_field_text(item: &[u8]) -> Result<Field, WireError> {
    let (kind, rest) = if let Some(after) = item.strip_prefix(b"(") {
        let close = after
            .iter()
            .take(4)
            .position(|&b| b == b')')
            .ok_or(WireError::Malformed("unclosed field type"))?;
        let code = &after[..close];
        if code.is_empty() || !code.iter().all(u8::is_ascii_digit) {
            return Err(WireError::Malformed("field type is not a number"));
        }
        let code: u8 = std::str::from_utf8(code)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(WireError::Malformed("field type"))?;
        (FieldType::from_code(code)?, &after[close + 1..])
    } else {
        (FieldType::String, item)
    };
    let eq = rest
        .iter()
        .position(|&b| b == b'=')
        .ok_or(WireError::Malformed("field without '='"))?;
    let name = std::str::from_utf8(&rest[..eq]).map_err(|_| WireError::Malformed("field name is not text"))?;
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::Malformed("bad field name"));
    }
    Ok(Field {
        name: name.to_string(),
        kind,
        value: rest[eq + 1..].to_vec(),
    })
}
