//! Recovery-key parsing: `recovery_key::decode` on any text.
//!
//! An accepted key re-encodes (`encode`) to text that decodes to the same 32 bytes, and that
//! text is the input itself once whitespace and zero-width characters are removed (base58
//! with a fixed prefix has one spelling per key). The first 32 input bytes are also taken as
//! a key: `encode` then `decode` gives them back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxkeys::recovery_key::{ENCODED_CHARS, decode, encode};
use mxkeys::secret::Key32;

fn ignorable(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = decode(&text) {
        let encoded = encode(&key);
        assert_eq!(
            encoded.len(),
            ENCODED_CHARS + ENCODED_CHARS / 4 - 1,
            "{encoded:?}"
        );
        let again = decode(&encoded).expect("encode's output does not decode");
        assert_eq!(again.expose_secret(), key.expose_secret(), "round trip");
        let given: String = text.chars().filter(|&c| !ignorable(c)).collect();
        let canonical: String = encoded.chars().filter(|&c| c != ' ').collect();
        assert_eq!(given, canonical, "two spellings of one key");
    }

    if let Some(bytes) = data.get(..32) {
        let mut k = [0u8; 32];
        k.copy_from_slice(bytes);
        let key = Key32::new(k);
        let encoded = encode(&key);
        assert!(encoded.starts_with("Es"), "{encoded:?}");
        let again = decode(&encoded).expect("encode's output does not decode");
        assert_eq!(again.expose_secret(), key.expose_secret(), "round trip");
    }
});
