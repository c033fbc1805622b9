//! Per-node credentials: a random token handed to the hosting service at creation, of
//! which only the SHA-256 digest is stored. A node presents the token to report on itself
//! and on nothing else.

use sha2::{Digest, Sha256};

/// A fresh token and the digest to store.
pub fn mint() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = hex::encode(bytes);
    let digest = digest(&token);
    (token, digest)
}

/// The stored form of a token.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares a presented token with a stored digest in constant time.
pub fn matches(token: &str, stored_digest: &str) -> bool {
    use subtle::ConstantTimeEq;
    !token.is_empty()
        && digest(token)
            .as_bytes()
            .ct_eq(stored_digest.as_bytes())
            .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_matches_only_its_own_digest() {
        let (token, digest) = mint();
        let (other, _) = mint();
        assert_eq!(token.len(), 64);
        assert!(matches(&token, &digest));
        assert!(!matches(&other, &digest));
        assert!(!matches("", &digest));
        assert_ne!(token, digest, "only the digest is stored");
    }
}
