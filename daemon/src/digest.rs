//! SHA-256 (FIPS 180-4), the hash of every chunk, block, index and manifest
//! seesaw checks, through ring's implementation: assembly that uses the
//! CPU's SHA-2 instructions where it has them (ARMv8 crypto extensions,
//! x86 SHA-NI) and tuned scalar or vector code otherwise (a Raspberry Pi 4
//! has no crypto extensions). ring is linked for TLS anyway, so this adds no
//! code. Uses no other seesaw module.

/// An incremental SHA-256: [`Sha256::update`] with the bytes in order, then
/// [`Sha256::finalize`] for the 32-byte digest.
#[derive(Clone)]
pub struct Sha256(ring::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl Sha256 {
    /// A hash of no bytes yet.
    pub fn new() -> Sha256 {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }

    /// Hashes `data` after the bytes given so far.
    pub fn update(&mut self, data: impl AsRef<[u8]>) {
        self.0.update(data.as_ref());
    }

    /// The digest of every byte given, 32 bytes.
    pub fn finalize(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }

    /// The digest of `data`, 32 bytes.
    pub fn digest(data: impl AsRef<[u8]>) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data.as_ref()).as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Sha256;

    #[test]
    fn fips_180_4_examples() {
        // FIPS 180-4 appendix examples ("abc" and the 448-bit message).
        assert_eq!(
            hex::encode(Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            hex::encode(Sha256::digest(long)),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        let mut h = Sha256::new();
        for part in long.chunks(5) {
            h.update(part);
        }
        assert_eq!(h.clone().finalize(), Sha256::digest(long));
        assert_eq!(
            hex::encode(Sha256::default().finalize()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
