//! X25519 against one fixed public key, as a fixed-base multiplication.
//!
//! Every session that goes into a backup is encrypted with a fresh ephemeral key to the same
//! backup public key `P`. `x25519(k, P)` is the Montgomery u-coordinate of `k·P`; x25519-dalek
//! computes it with the Montgomery ladder, a variable-base multiplication that costs most of an
//! upload's CPU time. With `P` fixed, a table of multiples of `P` turns each one into a
//! fixed-base multiplication (table lookups and about 64 additions), as the ephemeral public
//! key `k·B` already is.
//!
//! The result is the same bytes as the ladder's for every input, including public keys with a
//! small-order component: a clamped scalar `k` is a multiple of 8 below 2^255, so
//! `k·P = (k/8)·(8P)`, and `8P` lies in the prime-order subgroup, where `k/8` may be reduced
//! mod ℓ. A `P` whose u-coordinate is not on the curve proper (it is on the twist, or is −1)
//! has no Edwards form: such a key keeps the ladder. The tests compare both with x25519-dalek
//! on random keys, random u-coordinates and every small-order point.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::EdwardsBasepointTable;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use curve25519_dalek::traits::BasepointTable;
use zeroize::Zeroizing;

/// Precomputed multiples of one X25519 public key.
pub(crate) struct FixedPeer {
    public: MontgomeryPoint,
    /// Multiples of 8·P, or `None` when `P` has no Edwards form.
    table: Option<Box<EdwardsBasepointTable>>,
}

impl FixedPeer {
    /// Prepare for many exchanges with `public` (costs about as much as 30 exchanges).
    pub(crate) fn new(public: [u8; 32]) -> FixedPeer {
        let public = MontgomeryPoint(public);
        let table = public
            .to_edwards(0)
            .map(|p| Box::new(EdwardsBasepointTable::create(&p.mul_by_cofactor())));
        FixedPeer { public, table }
    }

    /// `x25519(secret, P)`: the shared secret, exactly as x25519-dalek's `diffie_hellman`.
    pub(crate) fn diffie_hellman(&self, secret: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        let clamped = Zeroizing::new(clamp_integer(*secret));
        let Some(table) = &self.table else {
            return Zeroizing::new(self.public.mul_clamped(*clamped).to_bytes());
        };
        let s = super::fixed_secret::eighth_of(&clamped);
        Zeroizing::new((&**table * &*s).to_montgomery().to_bytes())
    }

    /// The public key of `secret` (`x25519(secret, 9)`).
    pub(crate) fn public_key(secret: &[u8; 32]) -> [u8; 32] {
        let s = Zeroizing::new(Scalar::from_bytes_mod_order(clamp_integer(*secret)));
        (ED25519_BASEPOINT_TABLE * &*s).to_montgomery().to_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::ladder_check::{edge_points, ladder, public_of, random32};
    use super::*;

    #[test]
    fn same_as_the_ladder_for_real_keys() {
        for _ in 0..200 {
            let peer_secret = random32();
            let public = public_of(peer_secret);
            let fixed = FixedPeer::new(public);
            assert!(fixed.table.is_some());
            for _ in 0..5 {
                let k = random32();
                assert_eq!(*fixed.diffie_hellman(&k), ladder(k, public));
                assert_eq!(FixedPeer::public_key(&k), public_of(k));
            }
        }
    }

    #[test]
    fn same_as_the_ladder_for_any_u_coordinate() {
        // Random bytes: about half are on the twist (ladder kept), some have the top bit set or
        // are not reduced mod p; the curve points among them have torsion components.
        let (mut on_curve, mut twist) = (0, 0);
        for _ in 0..400 {
            let u = random32();
            let fixed = FixedPeer::new(u);
            if fixed.table.is_some() {
                on_curve += 1;
            } else {
                twist += 1;
            }
            let k = random32();
            assert_eq!(*fixed.diffie_hellman(&k), ladder(k, u), "u = {u:?}");
        }
        assert!(on_curve > 50 && twist > 50, "{on_curve} {twist}");
    }

    #[test]
    fn same_as_the_ladder_for_small_order_and_edge_points() {
        for u in edge_points() {
            let fixed = FixedPeer::new(u);
            for _ in 0..8 {
                let k = random32();
                assert_eq!(*fixed.diffie_hellman(&k), ladder(k, u), "u = {u:?}");
            }
        }
    }
}
