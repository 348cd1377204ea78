//! What an item's image may be: PNG, JPEG, GIF or WebP of at most [`MAX_IMAGE_BYTES`], whose
//! bytes are what its content type says. Told apart by their signatures (four fixed prefixes: a
//! crate such as `infer` knows hundreds of formats this service refuses anyway).

use crate::store::Error;

/// The largest image kept. (Through the edge, `transcoder.max_body_bytes` applies first.)
pub const MAX_IMAGE_BYTES: usize = 1 << 20;

/// An accepted type: its media type, the refusal when the bytes are not one, and its signature.
type ImageType = (&'static str, &'static str, fn(&[u8]) -> bool);

const TYPES: &[ImageType] = &[
    ("image/png", "the body is not a PNG image", |data| {
        data.starts_with(b"\x89PNG\r\n\x1a\n")
    }),
    ("image/jpeg", "the body is not a JPEG image", |data| {
        data.starts_with(b"\xff\xd8\xff")
    }),
    ("image/gif", "the body is not a GIF image", |data| {
        data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a")
    }),
    ("image/webp", "the body is not a WebP image", |data| {
        data.len() >= 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP"
    }),
];

/// Checks an image and returns its media type without parameters, lowercased (what is stored
/// and served back).
pub fn check(content_type: &str, data: &[u8]) -> Result<&'static str, Error> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((name, not_it, is_it)) = TYPES.iter().find(|(name, ..)| *name == media_type) else {
        return Err(Error::Invalid(
            "the image's content type must be image/png, image/jpeg, image/gif or image/webp",
        ));
    };
    if data.len() > MAX_IMAGE_BYTES {
        return Err(Error::Invalid("the image must be at most 1 MiB"));
    }
    if !is_it(data) {
        return Err(Error::Invalid(not_it));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(content_type: &str, data: &[u8]) -> &'static str {
        match check(content_type, data) {
            Err(Error::Invalid(why)) => why,
            other => panic!("{content_type}: {other:?}"),
        }
    }

    #[test]
    fn accepts_the_four_types_by_their_signatures() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(check("image/png", png).unwrap(), "image/png");
        assert_eq!(check("Image/PNG; q=1", png).unwrap(), "image/png");
        assert_eq!(
            check("image/jpeg", b"\xff\xd8\xff\xe0").unwrap(),
            "image/jpeg"
        );
        assert_eq!(check("image/gif", b"GIF89a\x01\0").unwrap(), "image/gif");
        assert_eq!(
            check("image/webp", b"RIFF\x24\0\0\0WEBPVP8 ").unwrap(),
            "image/webp"
        );
    }

    #[test]
    fn refuses_other_types_mismatches_and_oversize() {
        assert!(refused("text/plain", b"hello").contains("content type"));
        assert!(refused("", b"\x89PNG\r\n\x1a\n").contains("content type"));
        assert!(refused("image/svg+xml", b"<svg/>").contains("content type"));
        assert_eq!(
            refused("image/png", b"not a png"),
            "the body is not a PNG image"
        );
        assert_eq!(
            refused("image/jpeg", b"\x89PNG\r\n\x1a\n"),
            "the body is not a JPEG image"
        );
        assert_eq!(
            refused("image/webp", b"RIFF"),
            "the body is not a WebP image"
        );
        let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
        big.resize(MAX_IMAGE_BYTES + 1, 0);
        assert_eq!(
            refused("image/png", &big),
            "the image must be at most 1 MiB"
        );
        big.truncate(MAX_IMAGE_BYTES);
        assert!(check("image/png", &big).is_ok());
    }
}
