//! A request's headers as read in one host call. Reading them one by one costs a host call
//! each (and a VM re-entry to allocate each value), which for a filter that needs several of
//! them, or needs to know whether a header is there before removing it, costs more than
//! reading them all once.
//!
//! The snapshot keeps every name and value in one buffer and looks them up in place: copying
//! each of a request's dozen headers into two `String`s cost 9–17k instructions per filter and
//! request (bench/CHANGES.md).

use std::ops::Range;

/// The headers at one moment, in Envoy's order (names lower-case, as Envoy keeps them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// The names and values, as the host laid them out (or copied lossily where its bytes
    /// were not UTF-8).
    text: String,
    /// Where each header lies in `text`, with its name's key: lookups scan the keys and
    /// compare a name only where its key matches (a request's filters make some 45 lookups
    /// over 20 headers; comparing each name cost ~250 instructions a lookup).
    entries: Vec<Entry>,
}

/// One header: its name's [`NameKey`] and its name's and value's byte ranges in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: NameKey,
    name: (u32, u32),
    value: (u32, u32),
}

impl Entry {
    /// Whether the name and the value are text on their own in `text` (UTF-8 as a whole).
    fn within(&self, text: &str) -> bool {
        [self.name, self.value].iter().all(|&(start, end)| {
            text.is_char_boundary(start as usize) && text.is_char_boundary(end as usize)
        })
    }
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

/// `range` as the entry's pair of offsets; `None` past 4 GiB (no header map is that large).
fn offsets(range: &Range<usize>) -> Option<(u32, u32)> {
    Some((
        u32::try_from(range.start).ok()?,
        u32::try_from(range.end).ok()?,
    ))
}

impl Headers {
    /// Headers from name/value pairs (tests, and callers that made them).
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self::copied(
            pairs
                .iter()
                .map(|(name, value)| (name.as_bytes(), value.as_bytes())),
        )
    }

    /// Headers copied from the host's name/value pairs, in one buffer (the native host's
    /// form: Envoy lends pointers into its own header map). Bytes that are not UTF-8 read
    /// lossily.
    pub fn copied<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Self {
        let size = pairs
            .clone()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        let mut raw = Vec::with_capacity(size);
        let mut entries = Vec::with_capacity(pairs.size_hint().0);
        for (name, value) in pairs {
            let key = name_key(name);
            let start = raw.len();
            raw.extend_from_slice(name);
            let middle = raw.len();
            raw.extend_from_slice(value);
            let (Some(name), Some(value)) =
                (offsets(&(start..middle)), offsets(&(middle..raw.len())))
            else {
                return Self::default();
            };
            entries.push(Entry { key, name, value });
        }
        Self::checked(raw, entries)
    }

    /// Headers whose names and values lie in a host's buffer at `ranges`, read in place.
    /// `None` when a range is outside `raw`.
    pub fn in_buffer(raw: Vec<u8>, ranges: Vec<(Range<usize>, Range<usize>)>) -> Option<Self> {
        let mut entries = Vec::with_capacity(ranges.len());
        for (name, value) in &ranges {
            entries.push(Entry {
                key: name_key(raw.get(name.clone())?),
                name: offsets(name)?,
                value: offsets(value)?,
            });
            raw.get(value.clone())?;
        }
        Some(Self::checked(raw, entries))
    }

    /// `raw` as the snapshot's text, with one UTF-8 check of the whole buffer, which headers
    /// nearly always pass: then each lookup slices it, and a range is text exactly when both
    /// its ends fall on character boundaries (always, when it is all ASCII). Otherwise each
    /// name and value is copied lossily. `entries` lie within `raw`.
    fn checked(raw: Vec<u8>, entries: Vec<Entry>) -> Self {
        match String::from_utf8(raw) {
            Ok(text) if text.is_ascii() || entries.iter().all(|entry| entry.within(&text)) => {
                Self { text, entries }
            }
            Ok(text) => Self::lossy(text.as_bytes(), &entries),
            Err(error) => Self::lossy(&error.into_bytes(), &entries),
        }
    }

    /// [`Self::checked`] for a buffer whose names or values are not all UTF-8: each copied,
    /// lossily, into a new buffer.
    fn lossy(raw: &[u8], entries: &[Entry]) -> Self {
        let mut text = String::new();
        let mut copied = Vec::with_capacity(entries.len());
        let push = |text: &mut String, (start, end): (u32, u32)| {
            let at = text.len();
            let bytes = raw.get(start as usize..end as usize).unwrap_or_default();
            text.push_str(&String::from_utf8_lossy(bytes));
            offsets(&(at..text.len()))
        };
        for entry in entries {
            let (Some(name), Some(value)) =
                (push(&mut text, entry.name), push(&mut text, entry.value))
            else {
                return Self::default();
            };
            copied.push(Entry {
                key: name_key(
                    text.as_bytes()
                        .get(name.0 as usize..name.1 as usize)
                        .unwrap_or_default(),
                ),
                name,
                value,
            });
        }
        Self {
            text,
            entries: copied,
        }
    }

    /// Appends a header, as a host appends one it is asked to add.
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        let (Some(name_at), Some(value_at)) = (
            offsets(&(start..start + name.len())),
            offsets(&(start + name.len()..start + name.len() + value.len())),
        ) else {
            return;
        };
        self.text.push_str(name);
        self.text.push_str(value);
        self.entries.push(Entry {
            key: name_key(name.as_bytes()),
            name: name_at,
            value: value_at,
        });
    }

    #[inline(always)]
    fn text(&self, (start, end): (u32, u32)) -> &str {
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
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
                .entries
                .get(at..)?
                .iter()
                .position(|entry| entry.key == key)?;
            let known = self.entries.get(at).map(|entry| self.text(entry.name))?;
            if known == name || known.eq_ignore_ascii_case(name) {
                return Some(at);
            }
            at += 1;
        }
    }

    fn value_at(&self, at: usize) -> &str {
        self.entries
            .get(at)
            .map_or("", |entry| self.text(entry.value))
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
    fn a_pushed_header_is_read_as_one_the_host_gave() {
        let pair = |name: &str, value: &str| (name.to_string(), value.to_string());
        let mut pushed = Headers::new(vec![pair(":method", "GET")]);
        pushed.push("traceparent", "00-ab-cd-01");
        assert_eq!(
            pushed,
            Headers::new(vec![
                pair(":method", "GET"),
                pair("traceparent", "00-ab-cd-01")
            ])
        );
        assert_eq!(pushed.get("TraceParent"), Some("00-ab-cd-01"));
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
        // UTF-8 as a whole, but a character split between a name and its value: each half is
        // not text on its own.
        let split = in_buffer(&[(b"x-caf\xc3", b"\xa9"), (b"x-after", b"ok")]);
        assert_eq!(split.get("x-caf\u{fffd}"), Some("\u{fffd}"));
        assert_eq!(split.get("x-after"), Some("ok"));
        let copied = Headers::copied([(&b"x-latin1"[..], &b"caf\xe9"[..])].into_iter());
        assert_eq!(copied.get("x-latin1"), Some("caf\u{fffd}"));
    }
}
