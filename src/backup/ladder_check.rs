//! Test helpers shared by `fixed_peer` and `fixed_secret`: x25519-dalek's ladder as the
//! reference, random bytes, and the edge u-coordinates both must agree with it on.

use x25519_dalek::{PublicKey, StaticSecret};

/// 32 random bytes from the OS.
#[allow(clippy::unwrap_used)]
pub(super) fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    crate::fs::fill_random(&mut b).unwrap();
    b
}

/// `x25519(secret, public)` by x25519-dalek's Montgomery ladder.
pub(super) fn ladder(secret: [u8; 32], public: [u8; 32]) -> [u8; 32] {
    *StaticSecret::from(secret)
        .diffie_hellman(&PublicKey::from(public))
        .as_bytes()
}

/// The public key of `secret` by x25519-dalek.
pub(super) fn public_of(secret: [u8; 32]) -> [u8; 32] {
    *PublicKey::from(&StaticSecret::from(secret)).as_bytes()
}

/// 0, 1, p-1 (u = -1), p, p+1, 2^255-1 (non-canonical), and the order-8 points'
/// u-coordinates (from the x25519 test literature).
#[allow(clippy::unwrap_used)]
pub(super) fn edge_points() -> Vec<[u8; 32]> {
    let mut p_minus_1 = [0xffu8; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut points = vec![[0u8; 32], one, p_minus_1, p, p_plus_1, [0xff; 32]];
    for hex in [
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    ] {
        let mut b = [0u8; 32];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        points.push(b);
    }
    points
}
