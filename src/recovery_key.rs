//! The Matrix text form of a 32-byte key: the "recovery key" / "security key" users write down.
//!
//! The same form is used for a secret-storage key and for a (legacy) backup private key
//! (spec appendix "Cryptographic key representation"):
//!
//! 1. bytes = `0x8B 0x01` || key (32 bytes) || parity, where parity is the XOR of the 34
//!    preceding bytes;
//! 2. base58 with the Bitcoin alphabet (48 characters, always starting with `Es`);
//! 3. shown in groups of 4 characters separated by spaces.
//!
//! Reading ignores all whitespace (and invisible zero-width characters that copy and paste
//! from web pages carries along), then reports precisely what is wrong: a character that base58
//! does not have, a key that is too short or too long, something that is not a Matrix key at
//! all, or a mistyped character (parity).
//!
//! Every intermediate buffer that holds key material is zeroized.

use zeroize::Zeroizing;

use crate::error::ErrorKind;
use crate::secret::Key32;

/// The two bytes every Matrix recovery key starts with.
pub const PREFIX: [u8; 2] = [0x8B, 0x01];
/// Prefix, key and parity byte.
pub const DECODED_LEN: usize = 35;
/// Characters in the canonical encoding, without spaces.
pub const ENCODED_CHARS: usize = 48;

/// The Bitcoin base58 alphabet (no `0`, `O`, `I` or `l`).
const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Why a recovery key could not be read.
///
/// Messages never contain key material: only a character that cannot be part of any key, and
/// lengths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryKeyError {
    /// Nothing but whitespace was given.
    #[error("the recovery key is empty")]
    Empty,
    /// A character outside the base58 alphabet.
    #[error(
        "the recovery key has an invalid character {character:?} at position {position} (recovery keys never contain 0, O, I, l or punctuation)"
    )]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// 1-based position in the input as given (whitespace counted).
        position: usize,
    },
    /// The text does not have the 48 characters of every Matrix recovery key.
    #[error(
        "the recovery key has {chars} characters instead of 48: part of it is missing or extra"
    )]
    WrongLength {
        /// Key characters given (whitespace not counted).
        chars: usize,
    },
    /// 48 characters that do not decode to `0x8B 0x01` || 33 bytes.
    #[error(
        "this is not a Matrix recovery key (those start with \"Es\", and letters are case-sensitive)"
    )]
    WrongPrefix,
    /// The parity byte does not match.
    #[error("the recovery key's check digit does not match: a character is mistyped")]
    WrongParity,
}

impl RecoveryKeyError {
    /// The broad class of this error (always invalid input).
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// Characters ignored when reading: whitespace of any kind, and the invisible zero-width
/// characters that copying from web pages and chat messages can insert.
fn ignorable(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

fn alphabet_index(c: char) -> Option<u8> {
    if !c.is_ascii() {
        return None;
    }
    ALPHABET
        .iter()
        .position(|&a| a == c as u8)
        .and_then(|i| u8::try_from(i).ok())
}

/// Base58-encode `bytes` (big-endian number; each leading zero byte becomes a `1`).
fn base58_encode(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    // Every byte needs at most log(256)/log(58) < 1.37 digits.
    let cap = bytes.len() * 138 / 100 + 1;
    // Little-endian base58 digits; capacity reserved up front so nothing is reallocated.
    let mut digits: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(cap));
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let mut out = Zeroizing::new(Vec::with_capacity(zeros + digits.len()));
    out.extend(std::iter::repeat_n(ALPHABET[0], zeros));
    out.extend(digits.iter().rev().map(|&d| ALPHABET[usize::from(d)]));
    out
}

/// Base58-decode digit values (already mapped through the alphabet).
fn base58_decode(digits: &[u8]) -> Zeroizing<Vec<u8>> {
    // Each digit adds less than one byte.
    let mut bytes: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(digits.len() + 1));
    for &digit in digits {
        let mut carry = u32::from(digit);
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = digits.iter().take_while(|&&d| d == 0).count();
    let mut out = Zeroizing::new(Vec::with_capacity(zeros + bytes.len()));
    out.extend(std::iter::repeat_n(0u8, zeros));
    out.extend(bytes.iter().rev());
    out
}

fn parity(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// Encode a key as a recovery key: 12 groups of 4 characters separated by single spaces.
pub fn encode(key: &Key32) -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; DECODED_LEN]);
    raw[..2].copy_from_slice(&PREFIX);
    raw[2..34].copy_from_slice(key.expose_secret());
    raw[34] = parity(&raw[..34]);
    let chars = base58_encode(&raw[..]);
    let mut out = Zeroizing::new(String::with_capacity(chars.len() + chars.len() / 4));
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(char::from(c));
    }
    out
}

/// Read a recovery key, ignoring whitespace anywhere.
///
/// Checks, in order: characters, length (every Matrix key is 48 characters), prefix, parity,
/// so that the error names the first thing a user would have to fix.
///
/// The parity byte is a weak check: it catches every truncation and most typos, but about
/// 0.7% of single-character substitutions still decode (to a different key). Callers must
/// therefore still check the key (secret-storage key check, backup public key) before use.
pub fn decode(text: &str) -> Result<Key32, RecoveryKeyError> {
    let mut digits: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(ENCODED_CHARS));
    let mut chars = 0usize;
    for (i, c) in text.chars().enumerate() {
        if ignorable(c) {
            continue;
        }
        let Some(d) = alphabet_index(c) else {
            return Err(RecoveryKeyError::InvalidCharacter {
                character: c,
                position: i + 1,
            });
        };
        chars += 1;
        if digits.len() < ENCODED_CHARS {
            digits.push(d);
        }
    }
    if chars == 0 {
        return Err(RecoveryKeyError::Empty);
    }
    if chars != ENCODED_CHARS {
        return Err(RecoveryKeyError::WrongLength { chars });
    }
    let bytes = base58_decode(&digits);
    // 48 characters that are not 35 bytes starting 0x8B 0x01 cannot be a Matrix key.
    if bytes.len() != DECODED_LEN || bytes[..2] != PREFIX {
        return Err(RecoveryKeyError::WrongPrefix);
    }
    if parity(&bytes[..]) != 0 {
        return Err(RecoveryKeyError::WrongParity);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes[2..34]);
    Ok(Key32::new(*key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::Value;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn fixture() -> Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/recovery-key/pairs.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// matrix-js-sdk's encodeRecoveryKey output, both ways.
    #[test]
    fn js_sdk_pairs_both_ways() {
        let f = fixture();
        let pairs = f["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 10);
        for p in pairs {
            let rk = p["recovery_key"].as_str().unwrap();
            let hexkey = p["private_key_hex"].as_str().unwrap();
            let b64 = p["private_key_b64"].as_str().unwrap();
            let key = Key32::new(unhex(hexkey));
            assert_eq!(&*encode(&key), rk, "encode {hexkey}");
            let back = decode(rk).unwrap();
            assert_eq!(hex(back.expose_secret()), hexkey);
            assert_eq!(
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(back.expose_secret()),
                b64
            );
        }
    }

    #[test]
    fn js_sdk_decode_cases() {
        let f = fixture();
        let cases = f["decode_cases"].as_array().unwrap();
        assert_eq!(cases.len(), 6);
        for c in cases {
            let what = c["what"].as_str().unwrap();
            let rk = c["recovery_key"].as_str().unwrap();
            let expected = &c["matrix_js_sdk"];
            let got = decode(rk);
            if expected["ok"].as_bool().unwrap() {
                let key = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                let b64 =
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.expose_secret());
                assert_eq!(b64, expected["private_key_b64"].as_str().unwrap(), "{what}");
            } else {
                let e = got.err().unwrap_or_else(|| panic!("{what} must fail"));
                // Our errors are more precise than js-sdk's blanket "Incorrect parity".
                let want = match what {
                    "wrong parity (last char changed)" => RecoveryKeyError::WrongParity,
                    // 48 valid characters, but they decode to 36 bytes.
                    "lowercase" => RecoveryKeyError::WrongPrefix,
                    "truncated" => RecoveryKeyError::WrongLength { chars: 44 },
                    "invalid base58 char 0" => RecoveryKeyError::InvalidCharacter {
                        character: '0',
                        position: 1,
                    },
                    other => panic!("unexpected case {other}"),
                };
                assert_eq!(e, want, "{what}");
            }
        }
    }

    /// Spec brief 7.5: rust-sdk's `base58_decoding`: RFC 7748's Alice private key.
    #[test]
    fn rust_sdk_vector() {
        let alice = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        for text in [
            "EsTcLW2KPGiFwKEA3As5g5c4BXwkqeeJZJV8Q9fugUMNUE4d",
            "EsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4d",
        ] {
            assert_eq!(hex(decode(text).unwrap().expose_secret()), alice);
        }
        let raw = base58_decode(
            &"EsTcLW2KPGiFwKEA3As5g5c4BXwkqeeJZJV8Q9fugUMNUE4d"
                .chars()
                .map(|c| alphabet_index(c).unwrap())
                .collect::<Vec<_>>(),
        );
        assert_eq!(hex(&raw), format!("8b01{alice}ee"));
        assert_eq!(
            &*encode(&Key32::new(unhex(alice))),
            "EsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4d"
        );
        assert_eq!(
            decode("EsTcLW2KPGiFwKEA3As5g5c4BXwkqeeJZJV8Q9fugUMNUE4e").err(),
            Some(RecoveryKeyError::WrongParity)
        );
    }

    /// Spec brief 7.5: rust-sdk's secret-storage key parser cases.
    #[test]
    fn rust_sdk_ssss_parser_cases() {
        let want = "9fbd46bb345171c6f6022c9a25d5681ba54eec6a6c4953f3adc0b96e9d91ada3";
        for text in [
            "EsTpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRK",
            "EsTp RvZT njck 8Yrh RAtw XLS8 4Nr2 r9S9 LGAW DaEx VAPB vLRK",
            "  EsTpRvZ\tTnjck8Yrh\nRAtwXLS84Nr2r9\r\nS9LGAWDaExVAPBvLRK \n",
            "E s T p R v Z T n j c k 8 Y r h R A t w X L S 8 4 N r 2 r 9 S 9 L G A W D a E x V A P B v L R K",
        ] {
            assert_eq!(hex(decode(text).unwrap().expose_secret()), want, "{text:?}");
        }
        assert_eq!(
            decode("EsTpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRk").err(),
            Some(RecoveryKeyError::WrongParity)
        );
        assert_eq!(
            decode("AATpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRK").err(),
            Some(RecoveryKeyError::WrongPrefix)
        );
        assert_eq!(
            decode("AATpRvZTnjck8YrhRAtwXLS84Nr2r9S9").err(),
            Some(RecoveryKeyError::WrongLength { chars: 32 })
        );
        assert_eq!(
            decode("AATpRvZTnjck8YrhRAtwXLS84Nr0OIl").err(),
            Some(RecoveryKeyError::InvalidCharacter {
                character: '0',
                position: 28
            })
        );
    }

    #[test]
    fn unicode_whitespace_and_zero_width_are_ignored() {
        let key = Key32::new([0x42; 32]);
        let text = encode(&key);
        let weird: String = text
            .split(' ')
            .collect::<Vec<_>>()
            .join("\u{00A0}\u{2003}\u{200B}\u{3000}");
        assert_eq!(decode(&weird).unwrap().expose_secret(), &[0x42; 32]);
    }

    #[test]
    fn each_excluded_letter_is_named_with_its_position() {
        let key = Key32::new([9; 32]);
        let good = encode(&key);
        for bad in ['0', 'O', 'I', 'l', '+', '-', 'é'] {
            let mut s: Vec<char> = good.chars().collect();
            s[6] = bad; // the second character of the second group
            let s: String = s.into_iter().collect();
            let e = decode(&s).unwrap_err();
            assert_eq!(
                e,
                RecoveryKeyError::InvalidCharacter {
                    character: bad,
                    position: 7
                }
            );
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
            assert!(e.to_string().contains("position 7"), "{e}");
        }
    }

    #[test]
    fn empty_and_too_long() {
        assert_eq!(decode("").err(), Some(RecoveryKeyError::Empty));
        assert_eq!(decode(" \n\t").err(), Some(RecoveryKeyError::Empty));
        let good = encode(&Key32::new([1; 32]));
        let doubled = format!("{} {}", &*good, &*good);
        assert_eq!(
            decode(&doubled).err(),
            Some(RecoveryKeyError::WrongLength { chars: 96 })
        );
        // 48 characters that are not 35 bytes with the prefix.
        assert_eq!(
            decode(&"1".repeat(48)).err(),
            Some(RecoveryKeyError::WrongPrefix)
        );
        assert_eq!(
            decode(&"z".repeat(48)).err(),
            Some(RecoveryKeyError::WrongPrefix)
        );
        let huge = "E".repeat(10_000);
        assert_eq!(
            decode(&huge).err(),
            Some(RecoveryKeyError::WrongLength { chars: 10_000 })
        );
    }

    /// The parity byte catches most, not all, single-character typos (0.66% slip through:
    /// the XOR of the bytes can survive a change that carries across several bytes).
    #[test]
    fn single_character_substitutions_are_mostly_caught() {
        let key = Key32::new([0xA5; 32]);
        let good: Vec<u8> = encode(&key).bytes().filter(|b| *b != b' ').collect();
        assert_eq!(good.len(), ENCODED_CHARS);
        let (mut total, mut missed) = (0, 0);
        for i in 0..good.len() {
            for &a in ALPHABET.iter() {
                if a == good[i] {
                    continue;
                }
                let mut s = good.clone();
                s[i] = a;
                total += 1;
                if let Ok(k) = decode(&String::from_utf8(s).unwrap()) {
                    missed += 1;
                    assert_ne!(k.expose_secret(), key.expose_secret());
                }
            }
        }
        assert_eq!((missed, total), (18, 48 * 57));
    }

    #[test]
    fn messages_are_one_line_and_secret_free() {
        let key = Key32::new([0x11; 32]);
        let text = encode(&key);
        let mut mistyped: Vec<char> = text.chars().collect();
        let last = mistyped.len() - 1;
        mistyped[last] = if mistyped[last] == 'a' { 'b' } else { 'a' };
        let mistyped: String = mistyped.into_iter().collect();
        for e in [
            decode(&mistyped).unwrap_err(),
            decode("Es").unwrap_err(),
            decode("0").unwrap_err(),
        ] {
            let m = e.to_string();
            assert!(!m.contains('\n'), "{m}");
            assert!(!m.contains(&text[..8]), "{m}");
        }
        assert!(!format!("{key:?}").contains("11"));
    }

    #[test]
    fn base58_leading_zeros_round_trip() {
        for input in [
            &[][..],
            &[0][..],
            &[0, 0, 1][..],
            &[0xff; 40][..],
            &[0, 0xff][..],
        ] {
            let enc = base58_encode(input);
            let digits: Vec<u8> = enc
                .iter()
                .map(|&c| alphabet_index(char::from(c)).unwrap())
                .collect();
            assert_eq!(&base58_decode(&digits)[..], input);
        }
        assert_eq!(&base58_encode(&[0, 0, 1])[..], b"112");
        // "Hello World!" in Bitcoin base58.
        assert_eq!(&base58_encode(b"Hello World!")[..], b"2NEpo7TZRRrLZSi2U");
    }

    proptest::proptest! {
        #[test]
        fn round_trip(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let key = Key32::new(bytes);
            let text = encode(&key);
            proptest::prop_assert_eq!(text.len(), 59);
            proptest::prop_assert!(text.starts_with("Es"));
            let back = decode(&text).unwrap();
            proptest::prop_assert_eq!(back.expose_secret(), &bytes);
        }
    }
}
