//! Document shapes, and their conversion into domain types: one file per collection, the
//! shared conversions here.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use inventory_core::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod ledger;
mod notification;
mod order;
mod product;
mod user;

pub(crate) use ledger::*;
pub(crate) use notification::*;
pub(crate) use order::*;
pub(crate) use product::*;
pub(crate) use user::*;
pub(crate) fn sys(t: DateTime<Utc>) -> SystemTime {
    t.into()
}

pub(crate) fn utc(t: SystemTime) -> DateTime<Utc> {
    use chrono::SubsecRound;
    DateTime::<Utc>::from(t).trunc_subsecs(6)
}

/// For `skip_serializing_if`: a count of 0 is written as no field (as the original's
/// documents, which have none).
pub(crate) fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::other(format!("stored {what} is invalid: {e}"))
}

fn uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| bad("id", e))
}

/// A Firestore document id for any string: `%` and `/` are percent-encoded, as are the ids
/// Firestore reserves (`.`, `..`, `__name__`). Ids without these characters, such as the
/// original service's `product-1` and emails, are unchanged.
pub(crate) fn doc_id(raw: &str) -> String {
    let mut id = raw.replace('%', "%25").replace('/', "%2F");
    if id == "." || id == ".." {
        id = id.replace('.', "%2E");
    } else if id.len() >= 4 && id.starts_with("__") && id.ends_with("__") {
        id = format!("%5F{}", &id[1..]);
    }
    id
}

/// The id of a user written by the original service (no `user_id` field).
pub(crate) fn legacy_user_id(email: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("mailto:{email}").as_bytes())
}

/// The fields Firestore's deserializer adds to every document it returns (never written
/// back). The document structs carry the same three fields inline: `#[serde(flatten)]` would
/// buffer the document and turn its timestamps into strings.
/// Reads a document's create or update time. The deserializer hands these synthetic fields
/// over as RFC 3339 strings on some paths and as timestamps on others; both are accepted.
fn meta_time<'de, D>(d: D) -> std::result::Result<Option<SystemTime>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<SystemTime>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a timestamp")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            DateTime::parse_from_rfc3339(v)
                .map(|t| Some(t.with_timezone(&Utc).into()))
                .map_err(E::custom)
        }
        fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(
            self,
            d: D2,
        ) -> std::result::Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            // The (seconds, nanoseconds) pair of a SystemTime.
            let secs: u64 = seq.next_element()?.unwrap_or_default();
            let nanos: u32 = seq.next_element()?.unwrap_or_default();
            Ok(Some(
                SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos),
            ))
        }
    }
    d.deserialize_any(V)
}

/// The raw string of a document id made by [`doc_id`].
pub(crate) fn doc_id_decode(id: &str) -> String {
    if !id.contains('%') {
        return id.to_owned();
    }
    let id = id
        .replace("%5F", "_")
        .replace("%2E", ".")
        .replace("%2F", "/");
    id.replace("%25", "%")
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Longest document id that fits a UUID losslessly (62^20 < 2^122).
const LEGACY_ID_MAX: usize = 20;

/// The order id of an order the original wrote under an automatic document id (20 letters and
/// digits). The id is packed losslessly into a version-8 UUID, so the document can be found
/// again from the UUID alone ([`legacy_order_doc_id`]); our own order ids are version 7.
/// Ids of any other shape get a name-based UUID (listed, but not addressable by id).
pub(crate) fn legacy_order_uuid(doc_id: &str) -> Uuid {
    let packable = doc_id.len() <= LEGACY_ID_MAX
        && !doc_id.is_empty()
        && doc_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !packable {
        return Uuid::new_v5(&Uuid::NAMESPACE_OID, doc_id.as_bytes());
    }
    // Bijective base 62: every string of up to 20 digits has its own number.
    let v = doc_id.bytes().fold(0u128, |v, b| {
        let digit = BASE62.iter().position(|&c| c == b).unwrap_or_default() as u128;
        v * 62 + digit + 1
    });
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&((v >> 74) as u64).to_be_bytes()[2..]);
    let mid = ((v >> 62) & 0xFFF) as u16;
    bytes[6] = (mid >> 8) as u8;
    bytes[7] = mid as u8;
    let low = (v & ((1u128 << 62) - 1)) as u64;
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    Uuid::new_v8(bytes)
}

/// The document id packed into a UUID by [`legacy_order_uuid`], if it is one.
pub(crate) fn legacy_order_doc_id(id: Uuid) -> Option<String> {
    if id.get_version_num() != 8 {
        return None;
    }
    let b = id.as_bytes();
    let high = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]) as u128;
    let mid = (u128::from(b[6] & 0x0F) << 8) | u128::from(b[7]);
    let mut low_bytes = [0u8; 8];
    low_bytes.copy_from_slice(&b[8..]);
    let low = u128::from(u64::from_be_bytes(low_bytes) & ((1u64 << 62) - 1));
    let mut v = (high << 74) | (mid << 62) | low;
    let mut out = Vec::new();
    while v > 0 {
        v -= 1;
        out.push(BASE62[(v % 62) as usize]);
        v /= 62;
        if out.len() > LEGACY_ID_MAX {
            return None;
        }
    }
    out.reverse();
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The document id.
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) id: Option<String>,
}

/// An order projected on `order_id`, to tell the original's orders from ours.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OrderIdDoc {
    #[serde(default)]
    pub(crate) order_id: Option<String>,
    #[serde(rename = "_firestore_id", default)]
    pub(crate) fs_id: Option<String>,
    #[serde(rename = "_firestore_created", default, deserialize_with = "meta_time")]
    pub(crate) fs_created: Option<SystemTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IdempotencyDoc {
    pub(crate) order_id: String,
    /// When the key was first used (its order's time): retention expires keys by it. Keys
    /// written before retention have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) created_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CountDoc {
    pub(crate) count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_ids_round_trip_through_a_uuid() {
        for id in [
            "a",
            "0",
            "zzzzzzzzzzzzzzzzzzzz",
            "00000000000000000000",
            "Xk3lQm9PzR2sT7uVw0yB",
            "abc",
        ] {
            let uuid = legacy_order_uuid(id);
            assert_eq!(uuid.get_version_num(), 8, "{id}");
            assert_eq!(legacy_order_doc_id(uuid).as_deref(), Some(id), "{id}");
        }
        assert_ne!(legacy_order_uuid("ab"), legacy_order_uuid("ba"));
        assert_ne!(legacy_order_uuid("0"), legacy_order_uuid("00"));
        // Our own ids are v7 and never read as legacy ids.
        assert_eq!(legacy_order_doc_id(Uuid::now_v7()), None);
        // Other shapes get a stable, non-reversible id.
        let odd = legacy_order_uuid("order-with-dashes");
        assert_eq!(odd, legacy_order_uuid("order-with-dashes"));
        assert_eq!(legacy_order_doc_id(odd), None);
    }

    #[test]
    fn doc_ids_decode_to_the_raw_string() {
        for raw in [
            "product-1",
            "a/b",
            "50%",
            "..",
            "__x__",
            "Bob.Mixed@Example.com",
        ] {
            assert_eq!(doc_id_decode(&doc_id(raw)), raw);
        }
    }
}
