//! X25519 with one fixed secret against many public keys, on the Edwards form of the curve.
//!
//! Every key that comes out of a backup needs `x25519(k, E)`: the backup's secret `k` and the
//! entry's ephemeral public key `E`. x25519-dalek computes it with the Montgomery ladder on
//! 64-bit limbs, which was three quarters of a `backup download`'s CPU time (perf, 100,000
//! keys). curve25519-dalek's variable-base multiplication on Edwards points uses its AVX2
//! backend where the CPU has one (chosen at run time), so mapping `E` to Edwards form,
//! multiplying there and mapping back is cheaper than the ladder even with the two field
//! inversions and the square root that the maps cost.
//!
//! The result is the same bytes as the ladder's for every input, by the argument of
//! [`super::fixed_peer`]: the clamped `k` is a multiple of 8 below 2^255, so
//! `k·E = (k/8)·(8E)` with `8E` in the prime-order subgroup and `k/8 < ℓ`; a `u` with no
//! Edwards form (on the twist, or −1) keeps the ladder. The tests compare both with
//! x25519-dalek on real keys, random u-coordinates and every small-order point.

use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use zeroize::Zeroizing;

/// One X25519 secret prepared for many exchanges.
pub(crate) struct FixedSecret {
    clamped: Zeroizing<[u8; 32]>,
    /// `k/8` as a scalar (below ℓ, so not reduced).
    eighth: Zeroizing<Scalar>,
}

impl FixedSecret {
    /// Prepare `secret` (the X25519 private key bytes, clamped here as X25519 does).
    pub(crate) fn new(secret: &[u8; 32]) -> FixedSecret {
        let clamped = Zeroizing::new(clamp_integer(*secret));
        let eighth = eighth_of(&clamped);
        FixedSecret { clamped, eighth }
    }

    /// `x25519(secret, public)`: exactly the bytes of x25519-dalek's `diffie_hellman`.
    pub(crate) fn diffie_hellman(&self, public: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        let u = MontgomeryPoint(*public);
        match u.to_edwards(0) {
            Some(p) => {
                // By reference, so that no copy of the secret scalar is left on the stack.
                #[allow(clippy::op_ref)]
                let shared = p.mul_by_cofactor() * &*self.eighth;
                Zeroizing::new(shared.to_montgomery().to_bytes())
            }
            None => Zeroizing::new(u.mul_clamped(*self.clamped).to_bytes()),
        }
    }
}

/// `k/8` for a clamped `k` (a multiple of 8 below 2^255): shifted right by 3 bits, below
/// 2^252 < ℓ, so the scalar is not reduced.
pub(super) fn eighth_of(clamped: &[u8; 32]) -> Zeroizing<Scalar> {
    let mut eighth = Zeroizing::new([0u8; 32]);
    for (i, out) in eighth.iter_mut().enumerate() {
        let next = clamped.get(i + 1).copied().unwrap_or(0);
        *out = (clamped[i] >> 3) | (next << 5);
    }
    Zeroizing::new(Scalar::from_bytes_mod_order(*eighth))
}

#[cfg(test)]
mod tests {
    use super::super::ladder_check::{edge_points, ladder, public_of, random32};
    use super::*;

    #[test]
    fn same_as_the_ladder_for_real_keys() {
        for _ in 0..100 {
            let k = random32();
            let fixed = FixedSecret::new(&k);
            for _ in 0..10 {
                let e = public_of(random32());
                assert_eq!(*fixed.diffie_hellman(&e), ladder(k, e));
            }
        }
    }

    #[test]
    fn same_as_the_ladder_for_any_u_coordinate() {
        // Random bytes: about half are on the twist (ladder kept), some have the top bit set
        // or are not reduced mod p; the curve points among them have torsion components.
        let (mut on_curve, mut twist) = (0, 0);
        for _ in 0..400 {
            let u = random32();
            if MontgomeryPoint(u).to_edwards(0).is_some() {
                on_curve += 1;
            } else {
                twist += 1;
            }
            let k = random32();
            assert_eq!(
                *FixedSecret::new(&k).diffie_hellman(&u),
                ladder(k, u),
                "u = {u:?}"
            );
        }
        assert!(on_curve > 50 && twist > 50, "{on_curve} {twist}");
    }

    #[test]
    fn same_as_the_ladder_for_small_order_and_edge_points() {
        for u in edge_points() {
            for _ in 0..8 {
                let k = random32();
                let ours = FixedSecret::new(&k).diffie_hellman(&u);
                assert_eq!(*ours, ladder(k, u), "u = {u:?}");
            }
        }
    }
}
