//! SHA-256 in hex: how Drift names a thing by a secret or a request without storing either
//! (API keys, used tickets, Idempotency-Key workflow ids, request fingerprints).

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The whole digest (64 hex digits).
pub fn sha256_hex(data: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(data.as_ref()))
}

/// Its first 128 bits (32 hex digits): enough to name, shorter in keys and ids.
pub fn sha256_hex_128(data: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(data.as_ref())[..16])
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_lowercase_hex_of_the_known_value() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(super::sha256_hex("abc"), abc);
        assert_eq!(super::sha256_hex_128(b"abc"), &abc[..32]);
    }
}
