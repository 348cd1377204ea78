//! gRPC's length-prefixed messages on the wire (a flag byte, a 4-byte big-endian length, the
//! message), for the requests and responses transcoded through Envoy's router.

/// The messages as one gRPC request body.
pub fn frame(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(messages.iter().map(|m| m.len() + 5).sum());
    for message in messages {
        body.push(0);
        // A message over 4 GiB cannot have been built from a bounded request body.
        body.extend_from_slice(
            &u32::try_from(message.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        body.extend_from_slice(message);
    }
    body
}

/// Takes the complete messages at the front of `buffer`, leaving the start of the next one
/// there. A compressed message (we never offer compression) or one longer than `max` bytes is
/// an error.
pub fn take_messages(buffer: &mut Vec<u8>, max: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut messages = Vec::new();
    let mut at = 0;
    while let Some(prefix) = buffer.get(at..at + 5) {
        if prefix[0] != 0 {
            return Err("the backend sent a compressed message".into());
        }
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if length > max {
            return Err(format!(
                "the backend sent a message of {length} bytes, over {max}"
            ));
        }
        let Some(message) = buffer.get(at + 5..at + 5 + length) else {
            break;
        };
        messages.push(message.to_vec());
        at += 5 + length;
    }
    buffer.drain(..at);
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_anywhere_come_back_whole_and_in_order() {
        let messages = vec![b"one".to_vec(), Vec::new(), vec![7; 300]];
        let wire = frame(&messages);
        assert_eq!(&wire[..8], &[0, 0, 0, 0, 3, b'o', b'n', b'e']);
        for split in 0..wire.len() {
            let mut buffer = Vec::new();
            let mut got = Vec::new();
            for chunk in [&wire[..split], &wire[split..]] {
                buffer.extend_from_slice(chunk);
                got.extend(take_messages(&mut buffer, 1000).unwrap());
            }
            assert_eq!(got, messages, "split at {split}");
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn compressed_or_oversized_messages_are_refused() {
        let mut compressed = vec![1, 0, 0, 0, 1, 9];
        assert!(take_messages(&mut compressed, 10).is_err());
        let mut large = frame(&[vec![0; 11]]);
        assert_eq!(
            take_messages(&mut large, 10).unwrap_err(),
            "the backend sent a message of 11 bytes, over 10"
        );
    }
}
