//! One record: its bytes -> a canonical device IP and an event time, the reason it is invalid,
//! or Unsure, when the definition (lumu_cli/events.py) must decide.
//!
//! Decided here: an empty value, invalid UTF-8, a JSON object without escapes whose device_ip
//! and timestamp settle it (missing, the wrong JSON type, or a value read by the common rules).
//! Everything else is Unsure: JSON that serde_json refuses (not JSON, not an object, or JSON the
//! two decoders might read apart: escapes, duplicate keys, nesting past its limit), an address
//! std does not read that inet_pton might, and every timestamp outside stamp::parse's shapes.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::error::Category;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::stamp::{self, Unit};

/// events.Reason in its order, after Valid; the Python side checks the names match.
pub const REASONS: [&str; 8] = [
    "empty",
    "not_utf8",
    "not_json",
    "not_object",
    "missing_device_ip",
    "bad_device_ip",
    "missing_timestamp",
    "bad_timestamp",
];
pub const VALID: u8 = 0;
pub const EMPTY: u8 = 1;
pub const NOT_UTF8: u8 = 2;
pub const NOT_JSON: u8 = 3;
pub const NOT_OBJECT: u8 = 4;
pub const MISSING_DEVICE_IP: u8 = 5;
pub const BAD_DEVICE_IP: u8 = 6;
pub const MISSING_TIMESTAMP: u8 = 7;
pub const BAD_TIMESTAMP: u8 = 8;
pub const UNSURE: u8 = 255;

pub enum Ip {
    V4(u32),
    V6([u8; 16]),
}

pub enum Outcome {
    Counted(Ip, i64),
    Invalid(u8),
    Unsure,
}

/// The outcome for one record value (None: a null, a tombstone).
pub fn check(value: Option<&[u8]>) -> Outcome {
    let value = match value {
        None | Some([]) => return Outcome::Invalid(EMPTY),
        Some(value) => value,
    };
    let text = match std::str::from_utf8(value) {
        Ok(text) => text,
        Err(_) => return Outcome::Invalid(NOT_UTF8),
    };
    if text.contains('\\') || text.starts_with('\u{feff}') {
        return Outcome::Unsure;
    }
    let event: Event<'_> = match serde_json::from_str(text) {
        Ok(event) => event,
        Err(error) => return not_an_object(text, &error),
    };
    let ip = match event.device_ip {
        Field::Absent | Field::Null => return Outcome::Invalid(MISSING_DEVICE_IP),
        Field::Str(text) => match address(&text) {
            Some(Some(ip)) => ip,
            Some(None) => return Outcome::Invalid(BAD_DEVICE_IP),
            None => return Outcome::Unsure,
        },
        Field::UInt(_) | Field::Other => return Outcome::Invalid(BAD_DEVICE_IP),
        Field::Number => return Outcome::Unsure, // past a float's range, msgspec refuses the JSON
    };
    let millis = match event.timestamp {
        Field::Absent | Field::Null => return Outcome::Invalid(MISSING_TIMESTAMP),
        Field::Str(text) => stamp::parse(text.as_bytes(), Unit::Auto, true),
        Field::UInt(value) => stamp::epoch(value, Unit::Auto),
        Field::Number => None, // a float or a negative integer: the definition's
        Field::Other => return Outcome::Invalid(BAD_TIMESTAMP),
    };
    match millis {
        Some(millis) => Outcome::Counted(ip, millis),
        None => Outcome::Unsure,
    }
}

/// Why JSON that does not decode as an event does not: NOT_JSON for a syntax error, NOT_OBJECT
/// for other JSON; Unsure where the two decoders' limits differ (nesting, a number's range) and
/// for errors of this decoder's own (a repeated key).
fn not_an_object(text: &str, error: &serde_json::Error) -> Outcome {
    let limits = ["recursion limit", "number out of range"];
    let why = error.to_string();
    if limits.iter().any(|limit| why.contains(limit)) {
        return Outcome::Unsure;
    }
    match error.classify() {
        Category::Syntax | Category::Eof => Outcome::Invalid(NOT_JSON),
        Category::Data if !text.trim_start_matches(JSON_SPACE).starts_with('{') => {
            match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => Outcome::Invalid(NOT_OBJECT),
                Err(error) => not_an_object(text, &error),
            }
        }
        _ => Outcome::Unsure,
    }
}

const JSON_SPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// Some(Some(ip)) for an address, Some(None) for surely none, None when inet_pton must say.
///
/// Text without a colon can only be IPv4, and std reads dotted quads as inet_pton does (four
/// decimal numbers up to 255, no leading zeros, nothing else). IPv6 std reads is an address;
/// IPv6 it refuses may still be one to inet_pton. IPv4-mapped IPv6 is the IPv4 address.
fn address(text: &str) -> Option<Option<Ip>> {
    if !text.contains(':') {
        return Some(text.parse::<Ipv4Addr>().ok().map(|ip| Ip::V4(u32::from(ip))));
    }
    let ip: Ipv6Addr = text.parse().ok()?;
    let octets = ip.octets();
    Some(Some(match octets {
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => Ip::V4(u32::from_be_bytes([a, b, c, d])),
        _ => Ip::V6(octets),
    }))
}

/// A field's JSON value, as far as the rules care.
enum Field<'a> {
    Absent,
    Null,
    Str(Cow<'a, str>),
    UInt(u64),
    Number, // a float, or a negative integer
    Other,  // true, false, an array or an object
}

struct Event<'a> {
    device_ip: Field<'a>,
    timestamp: Field<'a>,
}

impl<'de> Deserialize<'de> for Event<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event = Event { device_ip: Field::Absent, timestamp: Field::Absent };
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::DeviceIp => &mut event.device_ip,
                Key::Timestamp => &mut event.timestamp,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if !matches!(slot, Field::Absent) {
                return Err(de::Error::custom("a repeated key")); // the decoders may differ
            }
            *slot = map.next_value()?;
        }
        Ok(event)
    }
}

enum Key {
    DeviceIp,
    Timestamp,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "device_ip" => Key::DeviceIp,
            "timestamp" => Key::Timestamp,
            _ => Key::Other,
        })
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Field::UInt(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(if value >= 0 { Field::UInt(value as u64) } else { Field::Number })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Number)
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(text.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
}
