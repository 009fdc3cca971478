//! How hard a new passphrase is to guess, scored as Element scores it: zxcvbn, score 0 to 4,
//! and 3 or more is strong enough for a file or store that holds room keys.
//!
//! The passphrase itself never leaves this module: the result carries the score and zxcvbn's
//! generic advice, nothing derived from the text.

use zeroize::Zeroizing;

use crate::secret::Passphrase;

/// The lowest score Element accepts for a new key-export passphrase.
pub const MIN_SCORE: u8 = 3;

/// Words that make a passphrase easier to guess for this tool's files.
const CONTEXT_WORDS: &[&str] = &[
    "mxkeys", "matrix", "element", "megolm", "keys", "export", "backup", "recovery", "store",
];

/// The verdict on a new passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strength {
    /// zxcvbn's score, 0 (guessed at once) to 4 (more than 10^10 guesses).
    pub score: u8,
    /// What makes it weak, when zxcvbn says ("This is a top-10 common password.").
    pub warning: Option<String>,
    /// How to make it stronger.
    pub suggestions: Vec<String>,
}

impl Strength {
    /// True when the score is below [`MIN_SCORE`].
    pub fn is_weak(&self) -> bool {
        self.score < MIN_SCORE
    }
}

/// Score `pass`; `context` adds words (such as the user's Matrix ID) that it should not be
/// built from. Bytes that are not UTF-8 are scored as replacement characters.
pub fn assess(pass: &Passphrase, context: &[&str]) -> Strength {
    let text = Zeroizing::new(String::from_utf8_lossy(pass.expose_secret()).into_owned());
    let mut words: Vec<&str> = CONTEXT_WORDS.to_vec();
    words.extend_from_slice(context);
    let entropy = zxcvbn::zxcvbn(&text, &words);
    let score = u8::from(entropy.score());
    let (warning, suggestions) = match entropy.feedback() {
        Some(f) => (
            f.warning().map(|w| w.to_string()),
            f.suggestions().iter().map(|s| s.to_string()).collect(),
        ),
        None => (None, Vec::new()),
    };
    Strength {
        score,
        warning,
        suggestions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(s: &str) -> Strength {
        assess(&Passphrase::new(s.as_bytes().to_vec()), &[])
    }

    #[test]
    fn common_and_short_passphrases_are_weak() {
        for p in [
            "pw1",
            "password",
            "123456",
            "matrix2024",
            "mxkeys",
            "qwertyuiop",
        ] {
            let s = score(p);
            assert!(s.is_weak(), "{p}: {s:?}");
        }
        assert!(score("password").warning.is_some());
        assert!(!score("pw1").suggestions.is_empty());
    }

    #[test]
    fn long_unusual_passphrases_are_strong() {
        for p in [
            "correct horse battery staple mango",
            "Tq7#vLm2!xR9pZ",
            "violet-anchor-88-marmalade-tundra",
        ] {
            let s = score(p);
            assert!(!s.is_weak(), "{p}: {s:?}");
            assert_eq!(s.score, 4, "{p}");
        }
    }

    #[test]
    fn the_context_counts() {
        let alone = score("alicewonderland1");
        let with = assess(
            &Passphrase::new(b"alicewonderland1".to_vec()),
            &["alice", "wonderland1"],
        );
        assert!(with.score <= alone.score);
    }

    #[test]
    fn advice_never_contains_the_passphrase() {
        let p = "hunter2hunter2";
        let s = score(p);
        for text in s.warning.iter().chain(s.suggestions.iter()) {
            assert!(!text.contains(p), "{text}");
            assert!(!text.contains("hunter"), "{text}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_scored() {
        let s = assess(&Passphrase::new(vec![0xff, 0xfe, 0x00, 0x80]), &[]);
        assert!(s.score <= 4);
    }
}
