//! Percent-decoding (RFC 3986), shared by path matching and `grpc-message` decoding.

/// Decodes `%XX` escapes; with `keep_slash`, `%2F` stays as it is. Returns `None` for a
/// malformed escape or bytes that are not UTF-8 (the route then does not match: 404).
pub fn percent_decode(text: &str, keep_slash: bool) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: `from_str_radix` alone would also take `+A`.
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if keep_slash && byte == b'/' {
                out.extend_from_slice(&bytes[i..i + 3]);
            } else {
                out.push(byte);
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_keeps_slashes_when_asked() {
        assert_eq!(percent_decode("a%20b", false).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2Fb", false).as_deref(), Some("a/b"));
        assert_eq!(percent_decode("a%2fb", true).as_deref(), Some("a%2fb"));
        assert_eq!(
            percent_decode("%e2%9c%93", false).as_deref(),
            Some("\u{2713}")
        );
        for bad in ["%", "%2", "%zz", "%ff", "%+A", "%-1", "a%+2b"] {
            assert_eq!(percent_decode(bad, false), None, "{bad}");
        }
    }
}
