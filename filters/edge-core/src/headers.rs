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
    /// The buffer the host filled, when it is UTF-8 (empty otherwise, and for headers made
    /// from pairs).
    raw: String,
    pairs: Vec<(Text, Text)>,
}

/// A name or value: a range of `raw`, or (for headers whose bytes are not all UTF-8, and for
/// headers made on the host) an owned copy; bytes that are not UTF-8 read as before, lossily.
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
            raw: String::new(),
            pairs,
        }
    }

    /// Headers whose names and values lie in a host's buffer at `entries`, read in place.
    /// `None` when a range is outside `raw`.
    pub fn in_buffer(raw: Vec<u8>, entries: Vec<(Range<usize>, Range<usize>)>) -> Option<Self> {
        // One UTF-8 check of the whole buffer, which headers nearly always pass: then each
        // lookup slices it, and a range is text exactly when both its ends fall on character
        // boundaries.
        let raw = match String::from_utf8(raw) {
            Ok(raw) => raw,
            Err(error) => return Self::copied(&error.into_bytes(), entries),
        };
        let mut pairs = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            if raw.get(name.clone()).is_none() || raw.get(value.clone()).is_none() {
                return None;
            }
            pairs.push((Text::In(name), Text::In(value)));
        }
        Some(Self { raw, pairs })
    }

    /// [`Self::in_buffer`] for a buffer that is not all UTF-8: each name and value copied,
    /// lossily.
    fn copied(raw: &[u8], entries: Vec<(Range<usize>, Range<usize>)>) -> Option<Self> {
        let text = |range: Range<usize>| {
            raw.get(range)
                .map(|bytes| Text::Copied(String::from_utf8_lossy(bytes).into_owned()))
        };
        let mut pairs = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            pairs.push((text(name)?, text(value)?));
        }
        Some(Self {
            raw: String::new(),
            pairs,
        })
    }

    #[inline(always)]
    fn text<'a>(&'a self, text: &'a Text) -> &'a str {
        match text {
            Text::In(range) => self.raw.get(range.clone()).unwrap_or_default(),
            Text::Copied(text) => text,
        }
    }

    /// Names compare as bytes. The lengths first: a lookup passes a dozen names, nearly all
    /// of another length, and reaching their bytes costs more than comparing them. Inlined:
    /// a request's lookups make some 350 of these calls.
    #[inline(always)]
    fn is(&self, key: &Text, name: &str) -> bool {
        let length = match key {
            Text::In(range) => range.len(),
            Text::Copied(text) => text.len(),
        };
        length == name.len() && self.text(key).eq_ignore_ascii_case(name)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `pairs` laid out in one buffer, as a host would hand them over.
    fn in_buffer(pairs: &[(&[u8], &[u8])]) -> Headers {
        let mut raw = Vec::new();
        let mut entries = Vec::new();
        for (name, value) in pairs {
            let name_at = raw.len()..raw.len() + name.len();
            raw.extend(*name);
            let value_at = raw.len()..raw.len() + value.len();
            raw.extend(*value);
            entries.push((name_at, value_at));
        }
        Headers::in_buffer(raw, entries).unwrap()
    }

    #[test]
    fn lookups_by_name_any_case_with_duplicates() {
        let made = Headers::new(vec![
            (":method".into(), "GET".into()),
            ("authorization".into(), "Bearer a".into()),
            ("Authorization".into(), "Bearer b".into()),
        ]);
        let read = in_buffer(&[
            (b":method", b"GET"),
            (b"authorization", b"Bearer a"),
            (b"Authorization", b"Bearer b"),
        ]);
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
    fn empty_values_bytes_that_are_not_utf8_and_ranges_outside_the_buffer() {
        let headers = in_buffer(&[
            (b"x-empty", b""),
            (b"x-latin1", b"caf\xe9"),
            (b"x-after", b"ok"),
        ]);
        assert_eq!(headers.get("x-empty"), Some(""));
        assert_eq!(headers.get("x-latin1"), Some("caf\u{fffd}"));
        assert_eq!(headers.get("x-after"), Some("ok"));
        assert_eq!(Headers::in_buffer(b"ab".to_vec(), vec![(0..1, 1..3)]), None);
    }
}
