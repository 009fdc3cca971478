//! PBKDF2-HMAC-SHA512, the one password-based KDF of the Matrix key formats.
//!
//! Used by key-export files (64 bytes out), by secret storage passphrases and legacy backup
//! passphrases (32 bytes, salt used as text), and by the store's own seal.

use zeroize::Zeroizing;

/// Derive `N` bytes with PBKDF2-HMAC-SHA512.
///
/// `rounds` must be at least 1; callers validate untrusted round counts before calling.
pub fn pbkdf2_sha512<const N: usize>(
    password: &[u8],
    salt: &[u8],
    rounds: u32,
) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, rounds.max(1), &mut out[..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Element's export vector 1 (spec brief 7.1): "password", "saltsaltsaltsalt", 10 rounds.
    #[test]
    fn element_vector_one_key() {
        let k = pbkdf2_sha512::<64>(b"password", b"saltsaltsaltsalt", 10);
        assert_eq!(
            hex(&k[..]),
            "877e8e76e2ac94ded7a92fc670228d5006b48210d33dface0cfb33735970128d\
             159f5f19743d832fe088124707e7bdc5c051f2cca2782774b07c76d3509a8e4a"
        );
    }
}
