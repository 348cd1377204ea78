//! proxy-wasm's map encoding, the form Envoy returns header maps and serialized lists (a CEL
//! expression's list value) in: the pair count, each pair's name and value lengths (u32,
//! little-endian), then each name and value followed by a NUL.

use edge_core::Headers;
use std::ops::Range;

/// Where each name and value lies in `raw`. Every range returned is within `raw`; `None` when
/// the bytes are not a whole map (empty bytes are an empty map).
pub(crate) fn map_entries(raw: &[u8]) -> Option<Vec<(Range<usize>, Range<usize>)>> {
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

/// A header map as Envoy returned it, read in place.
pub(crate) fn headers(raw: Vec<u8>) -> Option<Headers> {
    let entries = map_entries(&raw)?;
    Headers::in_buffer(raw, entries)
}

/// The elements of a list Envoy serialized as a map (each element a name, with an empty
/// value); unreadable bytes give no elements.
pub fn list_elements(list: &[u8]) -> Vec<&[u8]> {
    map_entries(list)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(element, _)| list.get(element))
        .collect()
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
    fn headers_are_read_in_place() {
        let read = headers(encode(&[
            (b":method", b"GET"),
            (b"x-empty", b""),
            (b"x-latin1", b"caf\xe9"),
        ]))
        .unwrap();
        assert_eq!(read.get(":method"), Some("GET"));
        assert_eq!(read.get("x-empty"), Some(""));
        assert_eq!(read.get("x-latin1"), Some("caf\u{fffd}"));
        assert_eq!(headers(Vec::new()), Some(Headers::default()));
    }

    #[test]
    fn a_truncated_or_lying_map_is_refused_not_a_panic() {
        let bytes = encode(&[(b"key", b"value")]);
        for cut in 1..bytes.len() - 1 {
            assert_eq!(headers(bytes[..cut].to_vec()), None, "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(headers(huge), None);
        assert!(list_elements(b"\xff\xff\xff").is_empty());
    }

    #[test]
    fn lists_are_their_names() {
        let list = encode(&[(b"401", b""), (b"", b""), (b"x", b"")]);
        assert_eq!(list_elements(&list), vec![&b"401"[..], b"", b"x"]);
    }
}
