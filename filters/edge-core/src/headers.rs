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
    /// Each name's [`NameKey`], beside `pairs`: lookups scan these words and compare a name
    /// only where its key matches (a request's filters make some 45 lookups over 20 headers;
    /// comparing each name cost ~250 instructions a lookup).
    keys: Vec<NameKey>,
}

/// A name's length and its first and last bytes (lower-cased), in one word: names that
/// differ in any of them differ.
type NameKey = u32;

#[inline(always)]
fn name_key(name: &[u8]) -> NameKey {
    let (first, last) = match (name.first(), name.last()) {
        (Some(first), Some(last)) => (first.to_ascii_lowercase(), last.to_ascii_lowercase()),
        _ => (0, 0),
    };
    (name.len().min(0xffff) as u32) << 16 | u32::from(first) << 8 | u32::from(last)
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
        Self::keyed(String::new(), pairs)
    }

    /// The snapshot of `pairs` (in `raw`), its names' keys computed.
    fn keyed(raw: String, pairs: Vec<(Text, Text)>) -> Self {
        let mut headers = Self {
            raw,
            pairs,
            keys: Vec::new(),
        };
        headers.keys = headers
            .pairs
            .iter()
            .map(|(name, _)| name_key(headers.text(name).as_bytes()))
            .collect();
        headers
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
        Some(Self::keyed(raw, pairs))
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
        Some(Self::keyed(String::new(), pairs))
    }

    #[inline(always)]
    fn text<'a>(&'a self, text: &'a Text) -> &'a str {
        match text {
            Text::In(range) => self.raw.get(range.clone()).unwrap_or_default(),
            Text::Copied(text) => text,
        }
    }

    /// The position of the first name from `from` on that is `name`, in any case. Envoy
    /// keeps names lower-case and callers ask in lower case, so bytes are compared as they are
    /// first (a case-blind comparison costs ~200 instructions).
    #[inline(always)]
    fn find(&self, name: &str, from: usize) -> Option<usize> {
        let key = name_key(name.as_bytes());
        let mut at = from;
        loop {
            at += self
                .keys
                .get(at..)?
                .iter()
                .position(|known| *known == key)?;
            let known = self.pairs.get(at).map(|(known, _)| self.text(known))?;
            if known == name || known.eq_ignore_ascii_case(name) {
                return Some(at);
            }
            at += 1;
        }
    }

    fn value_at(&self, at: usize) -> &str {
        self.pairs.get(at).map_or("", |(_, value)| self.text(value))
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name, 0).map(|at| self.value_at(at))
    }

    /// `get`, owned.
    pub fn value(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// Every value of `name`, for checks that must see duplicates (e.g. two `Authorization`
    /// headers).
    pub fn all(&self, name: &str) -> Vec<String> {
        let mut values = Vec::new();
        let mut from = 0;
        while let Some(at) = self.find(name, from) {
            values.push(self.value_at(at).to_string());
            from = at + 1;
        }
        values
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
    fn names_alike_in_length_and_ends_are_told_apart() {
        let read = in_buffer(&[(b"x-usEr-iD", b"spoofed"), (b"X-USER-ID", b"alice")]);
        assert_eq!(read.get("x-user-id"), Some("spoofed"));
        assert_eq!(read.all("x-user-id"), ["spoofed", "alice"]);
        let alike = in_buffer(&[(b"x-user-xd", b"other"), (b"", b"empty name")]);
        assert_eq!(alike.get("x-user-id"), None);
        assert_eq!(alike.get("x-user-xd"), Some("other"));
        assert_eq!(alike.get(""), Some("empty name"));
        assert_eq!(alike.all("x-user-id"), Vec::<String>::new());
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
