//! Whether 32 bytes are a compressed Ed25519 point, without decompressing it.
//!
//! Importing a session checks its Ed25519 signing key the way vodozemac does when it parses
//! the key: the bytes must decompress to a point of the curve. Decompression takes a square
//! root in GF(2^255 − 19), about 250 squarings, and was half of `encrypt`'s CPU time on large
//! files. Whether the root exists is one Legendre symbol, which crrl computes with Pornin's
//! optimised binary GCD in well under half the time (measured: 1.9 µs against 4.8 µs per key).
//!
//! The rule, as curve25519-dalek's `CompressedEdwardsY::decompress` applies it: clear the sign
//! bit, read y little-endian and reduce it mod p (non-canonical y is accepted, as there), and
//! let u = y² − 1, v = d·y² + 1. The point exists iff u/v is a square or zero. v is never zero
//! (−1/d is not a square), so u/v is a square exactly when u·v is, and the test is
//! (u·v | p) ≠ −1. The sign bit never makes a y invalid (x = 0 with the bit set is accepted
//! there too). The tests hold this to vodozemac's own parser on random and edge inputs.

use crrl::field::GF25519;

/// The curve constant d = −121665/121666 mod p.
const D: GF25519 = GF25519::w64be(
    0x52036cee2b6ffe73,
    0x8cc740797779e898,
    0x00700a4d4141d8ab,
    0x75eb4dca135978a3,
);

/// u·v for the y that `bytes` encode: the Legendre symbol of this decides the point.
fn uv(bytes: &[u8; 32]) -> GF25519 {
    let mut b = *bytes;
    b[31] &= 0x7f;
    // decode_reduce takes any 256-bit value mod p, so a non-canonical y is reduced as dalek does.
    let y = GF25519::decode_reduce(&b);
    let yy = y.square();
    let u = yy - GF25519::ONE;
    let v = D * yy + GF25519::ONE;
    u * v
}

/// Whether `bytes` decompress to an Ed25519 point.
pub fn is_ed25519_point(bytes: &[u8; 32]) -> bool {
    uv(bytes).legendre() >= 0
}

/// Rounds of the batch test: a batch that holds any non-point passes all of them with
/// probability 2^−ROUNDS, whatever its contents.
const ROUNDS: usize = 64;

/// The positions in `keys` of those that are not Ed25519 points, for a whole batch at once.
///
/// The Legendre symbol is multiplicative, so the symbol of a product of the u·v values is −1
/// exactly when an odd number of them are non-squares. Each round multiplies a random half of
/// the batch (bit r of a random 64-bit mask per key, from the OS generator, so a file cannot
/// be crafted against it) and takes one symbol: with any non-point present, each round sees
/// an odd number of them with probability exactly 1/2, independently. If all rounds pass, the
/// batch is all points (but for a 2^−64 chance); if one fails, every key is checked alone.
/// About 35 multiplications per key and 64 symbols per batch replace one symbol per key: for
/// the 512-key batches of an import, a third of the cost; below 128 keys it would cost more,
/// and the keys are checked one by one. Values with u·v = 0 (y = ±1) are
/// points and stay out of the products, which must not be zero.
pub fn non_points(keys: &[[u8; 32]]) -> Vec<usize> {
    let exact = || {
        (0..keys.len())
            .filter(|&i| !is_ed25519_point(&keys[i]))
            .collect()
    };
    if keys.len() < 2 * ROUNDS {
        return exact();
    }
    let mut random = vec![0u8; keys.len() * 8];
    if getrandom::fill(&mut random).is_err() {
        return exact();
    }
    let mut products = [GF25519::ONE; ROUNDS];
    for (key, mask) in keys.iter().zip(random.chunks_exact(8)) {
        let w = uv(key);
        if w.iszero() != 0 {
            continue;
        }
        let mut bits = u64::from_le_bytes(mask.try_into().unwrap_or([0xff; 8]));
        while bits != 0 {
            let r = bits.trailing_zeros() as usize;
            products[r] *= w;
            bits &= bits - 1;
        }
    }
    if products.iter().all(|p| p.legendre() >= 0) {
        Vec::new()
    } else {
        exact()
    }
}

#[cfg(test)]
mod tests {
    use super::{is_ed25519_point, non_points};
    use proptest::prelude::*;
    use vodozemac::Ed25519PublicKey;

    fn vodozemac_accepts(b: &[u8; 32]) -> bool {
        Ed25519PublicKey::from_slice(b).is_ok()
    }

    fn le(n: u64, high: bool) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        if high {
            b[31] |= 0x80;
        }
        b
    }

    /// p − k (and p + k, non-canonical, where it fits under 2^255), little-endian.
    fn around_p(k: u8, above: bool) -> [u8; 32] {
        let mut b = [0xffu8; 32];
        b[31] = 0x7f;
        b[0] = if above { 0xed + k } else { 0xed - k };
        b
    }

    #[test]
    fn edge_values_agree_with_vodozemac() {
        let mut cases: Vec<[u8; 32]> = Vec::new();
        for n in 0..64u64 {
            cases.push(le(n, false));
            cases.push(le(n, true));
        }
        for k in 0..19u8 {
            cases.push(around_p(k, false));
            cases.push(around_p(k, true));
        }
        cases.push([0xff; 32]);
        cases.push([0x00; 32]);
        let basepoint = curve25519_dalek::constants::ED25519_BASEPOINT_COMPRESSED.to_bytes();
        cases.push(basepoint);
        let mut accepted = 0;
        for c in &cases {
            assert_eq!(is_ed25519_point(c), vodozemac_accepts(c), "{c:02x?}");
            accepted += usize::from(is_ed25519_point(c));
        }
        // Both answers occur among the edge values, so the comparison means something.
        assert!(accepted > 10 && accepted < cases.len() - 10, "{accepted}");
        assert!(is_ed25519_point(&basepoint));
    }

    #[test]
    fn real_keys_are_points() {
        for _ in 0..50 {
            let key = vodozemac::Ed25519SecretKey::new().public_key();
            assert!(is_ed25519_point(key.as_bytes()));
        }
    }

    /// Real keys (points) and random bytes (about half not points) in a known pattern.
    fn mixed(n: usize, bad_every: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| {
                if bad_every > 0 && i % bad_every == bad_every - 1 {
                    loop {
                        let mut b = [0u8; 32];
                        getrandom::fill(&mut b).expect("OS random generator");
                        if !vodozemac_accepts(&b) {
                            break b;
                        }
                    }
                } else {
                    *vodozemac::Ed25519SecretKey::new().public_key().as_bytes()
                }
            })
            .collect()
    }

    #[test]
    fn a_batch_of_points_passes() {
        let mut keys = mixed(512, 0);
        // y = 1 and y = −1 (u·v = 0) are points too, and must not zero the products.
        keys[7] = le(1, false);
        keys[300] = around_p(1, false);
        assert!(vodozemac_accepts(&keys[7]) && vodozemac_accepts(&keys[300]));
        assert_eq!(non_points(&keys), Vec::<usize>::new());
    }

    #[test]
    fn one_non_point_in_a_batch_is_found() {
        for at in [0, 1, 255, 511] {
            let mut keys = mixed(512, 0);
            keys[at] = mixed(1, 1)[0];
            assert_eq!(non_points(&keys), vec![at]);
        }
    }

    #[test]
    fn many_non_points_are_all_found() {
        let keys = mixed(300, 3);
        let expected: Vec<usize> = (0..300).filter(|i| i % 3 == 2).collect();
        assert_eq!(non_points(&keys), expected);
        // An even number of non-points in a batch is found too (the symbols do not cancel).
        let keys = mixed(256, 128);
        assert_eq!(non_points(&keys), vec![127, 255]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn random_bytes_agree_with_vodozemac(b in any::<[u8; 32]>()) {
            prop_assert_eq!(is_ed25519_point(&b), vodozemac_accepts(&b));
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn batches_agree_with_vodozemac(
            n in 0usize..700,
            bad in proptest::collection::vec((any::<proptest::sample::Index>(), any::<[u8; 32]>()), 0..4),
        ) {
            let mut keys = mixed(n, 0);
            if n > 0 {
                for (at, bytes) in &bad {
                    keys[at.index(n)] = *bytes;
                }
            }
            let expected: Vec<usize> = (0..n).filter(|&i| !vodozemac_accepts(&keys[i])).collect();
            prop_assert_eq!(non_points(&keys), expected);
        }
    }
}
