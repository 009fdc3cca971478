//! Secret newtypes: redacted `Debug`, no `Display`/`Clone`/`Serialize`, zeroized on drop.
//!
//! Access to the bytes is always explicit (`expose_secret`), so that a reader can find every
//! place a secret is used by searching for that name.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A passphrase as the exact bytes the user gave (UTF-8 when typed; never normalised).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(Vec<u8>);

impl Passphrase {
    /// Wrap bytes that the caller already owns; they are zeroized when this value drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        Passphrase(bytes)
    }

    /// Take a `String` (e.g. from a prompt) without copying it.
    pub fn from_string(s: String) -> Self {
        Passphrase(s.into_bytes())
    }

    /// The raw bytes.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// True when the passphrase is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compare with another passphrase in constant time (for "type it twice" prompts).
    pub fn ct_eq(&self, other: &Passphrase) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.0.len() && bool::from(self.0.ct_eq(&other.0))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// A 32-byte symmetric key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Key32(Box<[u8; 32]>);

impl Key32 {
    /// Wrap key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        let mut b = Zeroizing::new(bytes);
        Key32(Box::new(std::mem::take(&mut *b)))
    }

    /// A fresh random key from the OS RNG.
    pub fn random() -> std::io::Result<Self> {
        let mut k = Box::new([0u8; 32]);
        crate::fs::fill_random(&mut k[..])?;
        Ok(Key32(k))
    }

    /// The raw key bytes.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

/// A homeserver access token.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wrap a token; it is zeroized when this value drops.
    pub fn new(token: String) -> Self {
        AccessToken(token)
    }

    /// The token text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let p = Passphrase::from_string("hunter2".into());
        assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");
        let k = Key32::new([7u8; 32]);
        assert!(!format!("{k:?}").contains('7'));
    }

    #[test]
    fn constant_time_compare() {
        let a = Passphrase::from_string("abc".into());
        assert!(a.ct_eq(&Passphrase::from_string("abc".into())));
        assert!(!a.ct_eq(&Passphrase::from_string("abd".into())));
        assert!(!a.ct_eq(&Passphrase::from_string("abcd".into())));
    }
}
