//! A request's headers as read in one host call. Reading them one by one costs a host call
//! each (and a VM re-entry to allocate each value), which for a filter that needs several of
//! them, or needs to know whether a header is there before removing it, costs more than
//! reading them all once.
//!
//! The snapshot keeps the buffer Envoy filled and looks names and values up in place: copying
//! each of a request's dozen headers into two `String`s cost 9–17k instructions per filter and
//! request (bench/CHANGES.md).

use std::ops::Range;

/// The headers at one moment, in Envoy's order (names lower-case, as Envoy keeps them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// The proxy-wasm map encoding Envoy returned (empty for headers made on the host).
    raw: Vec<u8>,
    pairs: Vec<(Text, Text)>,
}

/// A name or value: a UTF-8 range of `raw`, or (for bytes that are not UTF-8, and for headers
/// made on the host) an owned copy; bytes that are not UTF-8 read as before, lossily.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Text {
    In(Range<usize>),
    Copied(String),
}

impl Headers {
    /// Headers from name/value pairs (tests, and callers that made them).
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let pairs = pairs
            .into_iter()
            .map(|(name, value)| (Text::Copied(name), Text::Copied(value)))
            .collect();
        Self {
            raw: Vec::new(),
            pairs,
        }
    }

    /// Headers from proxy-wasm's map encoding (see [`map_entries`]). `None` when the bytes are
    /// not a whole map.
    pub fn from_map_bytes(raw: Vec<u8>) -> Option<Self> {
        let text = |range: Range<usize>| match std::str::from_utf8(&raw[range.clone()]) {
            Ok(_) => Text::In(range),
            Err(_) => Text::Copied(String::from_utf8_lossy(&raw[range]).into_owned()),
        };
        let pairs = map_entries(&raw)?
            .into_iter()
            .map(|(name, value)| (text(name), text(value)))
            .collect();
        Some(Self { raw, pairs })
    }

    fn bytes<'a>(&'a self, text: &'a Text) -> &'a [u8] {
        match text {
            Text::In(range) => self.raw.get(range.clone()).unwrap_or_default(),
            Text::Copied(text) => text.as_bytes(),
        }
    }

    /// Names compare as bytes; only a value found is read as text (it was checked to be UTF-8
    /// when the snapshot was taken).
    fn is(&self, key: &Text, name: &str) -> bool {
        self.bytes(key).eq_ignore_ascii_case(name.as_bytes())
    }

    fn text<'a>(&'a self, value: &'a Text) -> &'a str {
        std::str::from_utf8(self.bytes(value)).unwrap_or_default()
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| self.is(key, name))
            .map(|(_, value)| self.text(value))
    }

    /// `get`, owned.
    pub fn value(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// Every value of `name`, for checks that must see duplicates (e.g. two `Authorization`
    /// headers).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(key, _)| self.is(key, name))
            .map(|(_, value)| self.text(value).to_string())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Where each name and value lies in proxy-wasm's map encoding, the form Envoy returns header
/// maps and serialized lists in: the pair count, each pair's name and value lengths (u32,
/// little-endian), then each name and value followed by a NUL. Every range returned is within
/// `raw`; `None` when the bytes are not a whole map (empty bytes are an empty map).
pub fn map_entries(raw: &[u8]) -> Option<Vec<(Range<usize>, Range<usize>)>> {
    if raw.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let word: [u8; 4] = raw.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(word) as usize)
    };
    let count = read_u32(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    // At least 10 bytes per pair (two lengths, two NULs): a lying count allocates nothing.
    let mut entries = Vec::with_capacity(count.min(raw.len() / 10));
    for index in 0..count {
        let mut next = |length: usize| -> Option<Range<usize>> {
            let range = data..data.checked_add(length)?;
            raw.get(range.clone())?;
            data = range.end.checked_add(1)?;
            Some(range)
        };
        let name = next(read_u32(4 + index * 8)?)?;
        let value = next(read_u32(8 + index * 8)?)?;
        entries.push((name, value));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// proxy-wasm's map encoding of `pairs`, as Envoy writes it.
    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut bytes = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            bytes.extend((name.len() as u32).to_le_bytes());
            bytes.extend((value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            for text in [name, value] {
                bytes.extend(*text);
                bytes.push(0);
            }
        }
        bytes
    }

    #[test]
    fn lookups_by_name_any_case_with_duplicates() {
        let made = Headers::new(vec![
            (":method".into(), "GET".into()),
            ("authorization".into(), "Bearer a".into()),
            ("Authorization".into(), "Bearer b".into()),
        ]);
        let read = Headers::from_map_bytes(encode(&[
            (b":method", b"GET"),
            (b"authorization", b"Bearer a"),
            (b"Authorization", b"Bearer b"),
        ]))
        .unwrap();
        for headers in [made, read] {
            assert_eq!(headers.get(":method"), Some("GET"));
            assert_eq!(headers.get("AUTHORIZATION"), Some("Bearer a"));
            assert_eq!(headers.all("authorization"), ["Bearer a", "Bearer b"]);
            assert!(headers.all("cookie").is_empty());
            assert!(!headers.contains("x-user-id"));
            assert_eq!(headers.value(":method").as_deref(), Some("GET"));
        }
        assert_eq!(Headers::default().get(":path"), None);
    }

    #[test]
    fn empty_values_and_bytes_that_are_not_utf8() {
        let headers = Headers::from_map_bytes(encode(&[
            (b"x-empty", b""),
            (b"x-latin1", b"caf\xe9"),
            (b"x-after", b"ok"),
        ]))
        .unwrap();
        assert_eq!(headers.get("x-empty"), Some(""));
        assert_eq!(headers.get("x-latin1"), Some("caf\u{fffd}"));
        assert_eq!(headers.get("x-after"), Some("ok"));
        assert_eq!(
            Headers::from_map_bytes(Vec::new()),
            Some(Headers::default())
        );
    }

    #[test]
    fn a_truncated_or_lying_map_is_refused_not_a_panic() {
        let bytes = encode(&[(b"key", b"value")]);
        for cut in 1..bytes.len() - 1 {
            assert_eq!(
                Headers::from_map_bytes(bytes[..cut].to_vec()),
                None,
                "cut at {cut}"
            );
        }
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Headers::from_map_bytes(huge), None);
    }
}
