//! Device tokens for the native protocol.
//!
//! A token is 32 random bytes shown once at registration; only its SHA-256 is stored. A slow
//! password hash (argon2) buys nothing for a secret with 256 bits of entropy, and ingest checks
//! a token on every request, so a fast hash is the right tool here.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh token, as 64 hex characters.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` matches the stored `token_hash`, compared in constant time.
pub fn verify(token: &str, token_hash: &str) -> bool {
    let computed = hash(token);
    computed.len() == token_hash.len()
        && computed.bytes().zip(token_hash.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_against_its_hash_only() {
        let t = generate();
        assert_eq!(t.len(), 64);
        assert!(verify(&t, &hash(&t)));
        assert!(!verify(&generate(), &hash(&t)));
        assert!(!verify(&t, ""));
    }

    #[test]
    fn tokens_are_not_repeated() {
        assert_ne!(generate(), generate());
    }
}
