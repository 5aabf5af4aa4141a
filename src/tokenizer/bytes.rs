//! Token text ⇄ bytes for the two vocabulary conventions we meet.
//!
//! GPT-2 byte-level BPE writes every byte as one printable character
//! (`openai/gpt-2` `encoder.py::bytes_to_unicode`: printable Latin-1 bytes
//! stand for themselves, the other 68 bytes map to U+0100 upwards, so a space
//! is `Ġ` and a newline `Ċ`). SentencePiece writes a space as `▁` and an
//! unrepresentable byte as `<0xNN>`.

use std::sync::LazyLock;

/// Whether byte `b` stands for itself in the byte-level alphabet.
fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The 68 bytes that do not stand for themselves, in order: the n-th is
/// written as U+0100 + n.
static SHIFTED: LazyLock<Vec<u8>> =
    LazyLock::new(|| (0..=255u8).filter(|b| !is_printable(*b)).collect());

/// The byte-level character that stands for `b`.
#[cfg(test)]
pub(crate) fn byte_to_char(b: u8) -> char {
    if is_printable(b) {
        return char::from(b);
    }
    let nth = SHIFTED.iter().position(|&x| x == b).unwrap_or(0) as u32;
    char::from_u32(256 + nth).unwrap_or('\u{FFFD}')
}

/// The byte a byte-level character stands for, if it is one.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    match code {
        0..=255 => {
            let b = code as u8;
            is_printable(b).then_some(b)
        }
        _ => SHIFTED.get(usize::try_from(code - 256).ok()?).copied(),
    }
}

/// Encodes raw bytes in the byte-level alphabet (`b" a"` → `"Ġa"`).
#[cfg(test)]
pub(crate) fn bytes_to_byte_level(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_to_char(b)).collect()
}

/// Bytes of a byte-level token. A token with a character outside the
/// alphabet (an added token stored as plain text) is its own UTF-8 bytes,
/// as the byte-level decoder treats it.
pub(crate) fn byte_level_to_bytes(token: &str) -> Vec<u8> {
    token
        .chars()
        .map(char_to_byte)
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_else(|| token.as_bytes().to_vec())
}

/// The byte written by a SentencePiece byte token `<0xNN>`.
pub(crate) fn sentencepiece_byte(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Bytes of a SentencePiece token: `<0xNN>` is one byte, `▁` a space.
pub(crate) fn sentencepiece_to_bytes(token: &str) -> Vec<u8> {
    match sentencepiece_byte(token) {
        Some(b) => vec![b],
        None => token.replace('▁', " ").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_is_a_bijection() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c), "duplicate char for byte {b}");
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'\t'), 'ĉ');
        assert_eq!(char_to_byte('日'), None);
    }

    #[test]
    fn token_bytes_conventions() {
        assert_eq!(byte_level_to_bytes("Ġthe"), b" the");
        assert_eq!(bytes_to_byte_level(b" the\n"), "ĠtheĊ");
        assert_eq!(byte_level_to_bytes("<|im_start|>"), b"<|im_start|>");
        assert_eq!(byte_level_to_bytes("a b"), b"a b");
        assert_eq!(sentencepiece_to_bytes("▁the"), b" the");
        assert_eq!(sentencepiece_to_bytes("<0x0A>"), b"\n");
        assert_eq!(sentencepiece_byte("<0xZZ>"), None);
        assert_eq!(sentencepiece_byte("<0x0A0>"), None);
    }
}
