//! PBKDF2-HMAC-SHA512, the one password-based KDF of the Matrix key formats.
//!
//! Used by key-export files (64 bytes out), by secret-storage passphrases and legacy backup
//! passphrases (32 bytes, salt used as text), and by the store's own seal.
//!
//! The iteration loop is written against the SHA-512 compression function directly: the HMAC
//! inner and outer states after the key block are computed once, and each round is then
//! exactly two compressions of one pre-padded block, which is the floor for PBKDF2-HMAC-SHA512.
//! The first round of each output block, and all key handling, use the `hmac` crate; the
//! result is checked against the `pbkdf2` crate in the tests.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;
use sha2::block_api::compress512;
use zeroize::{Zeroize, Zeroizing};

const BLOCK: usize = 128;
const OUT: usize = 64;

const IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// SHA-512 states after absorbing the HMAC key XOR ipad / opad.
struct KeyedStates {
    inner: [u64; 8],
    outer: [u64; 8],
}

impl Drop for KeyedStates {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

fn keyed_states(password: &[u8]) -> KeyedStates {
    let mut key = Zeroizing::new([0u8; BLOCK]);
    if password.len() > BLOCK {
        use sha2::Digest;
        let d = Sha512::digest(password);
        key[..OUT].copy_from_slice(&d);
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let mut pad = Zeroizing::new([0u8; BLOCK]);
    let mut inner = IV;
    for (p, k) in pad.iter_mut().zip(key.iter()) {
        *p = k ^ 0x36;
    }
    compress512(&mut inner, &[*pad]);
    let mut outer = IV;
    for (p, k) in pad.iter_mut().zip(key.iter()) {
        *p = k ^ 0x5c;
    }
    compress512(&mut outer, &[*pad]);
    KeyedStates { inner, outer }
}

/// A 128-byte block holding a 64-byte message after one block of key, padded for SHA-512:
/// message || 0x80 || zeros || bit length (128 + 64) * 8 = 1536 as u128 big-endian.
fn padded_block() -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[OUT] = 0x80;
    b[BLOCK - 2..].copy_from_slice(&1536u16.to_be_bytes());
    b
}

fn state_to_block(state: &[u64; 8], block: &mut [u8; BLOCK]) {
    for (i, w) in state.iter().enumerate() {
        block[i * 8..i * 8 + 8].copy_from_slice(&w.to_be_bytes());
    }
}

/// One output block of PBKDF2 (T_i), `rounds` >= 1.
fn pbkdf2_block(
    states: &KeyedStates,
    password: &[u8],
    salt: &[u8],
    index: u32,
    rounds: u32,
    out: &mut [u8; OUT],
) {
    // U_1 = HMAC(P, S || INT(i)), with the hmac crate (any salt length).
    let mut mac = match <Hmac<Sha512> as KeyInit>::new_from_slice(password) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm cannot be taken.
        Err(_) => return,
    };
    mac.update(salt);
    mac.update(&index.to_be_bytes());
    let u1 = mac.finalize().into_bytes();
    out.copy_from_slice(&u1);

    let mut block = Zeroizing::new(padded_block());
    block[..OUT].copy_from_slice(&u1);
    let mut acc: [u64; 8] = [0; 8];
    for (i, a) in acc.iter_mut().enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&u1[i * 8..i * 8 + 8]);
        *a = u64::from_be_bytes(w);
    }
    let mut st = [0u64; 8];
    for _ in 1..rounds {
        // inner = SHA512(key^ipad || U_prev)
        st = states.inner;
        compress512(&mut st, &[*block]);
        state_to_block(&st, &mut block);
        // U = SHA512(key^opad || inner)
        st = states.outer;
        compress512(&mut st, &[*block]);
        state_to_block(&st, &mut block);
        for (a, s) in acc.iter_mut().zip(st.iter()) {
            *a ^= s;
        }
    }
    for (i, a) in acc.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&a.to_be_bytes());
    }
    acc.zeroize();
    st.zeroize();
}

/// Derive `N` bytes with PBKDF2-HMAC-SHA512.
///
/// `rounds` must be at least 1 (0 is treated as 1); callers validate untrusted round counts
/// before calling, since the work is linear in them.
pub fn pbkdf2_sha512<const N: usize>(
    password: &[u8],
    salt: &[u8],
    rounds: u32,
) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    let states = keyed_states(password);
    let mut t = Zeroizing::new([0u8; OUT]);
    for (i, chunk) in out.chunks_mut(OUT).enumerate() {
        pbkdf2_block(&states, password, salt, i as u32 + 1, rounds.max(1), &mut t);
        chunk.copy_from_slice(&t[..chunk.len()]);
    }
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

    /// Agrees with the `pbkdf2` crate for every password length around the block size, any
    /// salt, rounds 1..4 and more, and multi-block outputs.
    #[test]
    fn matches_reference_implementation() {
        for plen in [0usize, 1, 31, 64, 127, 128, 129, 300] {
            let password: Vec<u8> = (0..plen).map(|i| (i * 7 + 3) as u8).collect();
            for (salt, rounds) in [
                (&b""[..], 1u32),
                (b"s", 2),
                (b"saltsaltsaltsalt", 3),
                (&[0xffu8; 200][..], 17),
            ] {
                let ours = pbkdf2_sha512::<64>(&password, salt, rounds);
                let mut theirs = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(&password, salt, rounds, &mut theirs);
                assert_eq!(&ours[..], &theirs[..], "plen {plen} rounds {rounds}");
                let ours = pbkdf2_sha512::<100>(&password, salt, rounds);
                let mut theirs = [0u8; 100];
                pbkdf2::pbkdf2_hmac::<Sha512>(&password, salt, rounds, &mut theirs);
                assert_eq!(&ours[..], &theirs[..]);
                let ours = pbkdf2_sha512::<32>(&password, salt, rounds);
                assert_eq!(&ours[..], &theirs[..32]);
            }
        }
    }

    /// Secret-storage passphrase vector (matrix-js-sdk fixture): 500,000 rounds.
    #[test]
    fn js_sdk_passphrase_vector() {
        let k = pbkdf2_sha512::<32>(
            b"correct horse battery staple",
            b"QBmaRoFKRNEqBNQm8YJQhxJmFJXEbfWs",
            500_000,
        );
        use base64::Engine;
        assert_eq!(
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&k[..]),
            "kHQXj2dfx+uZK2x4XXh73eGqeskYz1aD1z9CaAYtLg4"
        );
    }
}
