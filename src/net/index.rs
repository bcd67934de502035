//! A directory URL (ending in `/`): the newest image of a directory made by
//! `overboot publish`, chosen as `overboot update` chooses it
//! (`update::pick::choose`: the highest version among the images its `SHA256SUMS`
//! lists), once that list has been checked against `SHA256SUMS.minisig` under a key
//! of the initramfs. The image is then verified against both its own signature and
//! the list's SHA-256.

use crate::verify::{self, Mode, SUMS_FILE, TrustStore};

/// Check `SHA256SUMS` against its signature under the trusted keys; the signature
/// must name the list (`file:SHA256SUMS`, checked by `verify::prepare`), as
/// `overboot publish` writes it.
pub fn verify_list(sums: &str, signature: &str, trust: &TrustStore) -> Result<(), String> {
    let sig_name = format!("{SUMS_FILE}.minisig");
    let expected = verify::prepare(SUMS_FILE, Mode::Required, trust, &|p: &str| {
        Ok((p == sig_name).then(|| signature.to_string()))
    })?;
    let mut digest = expected.digester()?;
    digest.update(sums.as_bytes());
    digest.finish(SUMS_FILE).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair and signatures made with minisign's format (test vectors of
    /// minisign-verify would need their key; these come from the `minisign` crate).
    fn signed(data: &[u8], file: &str) -> (TrustStore, String) {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let pk = kp.pk.to_box().unwrap().to_string();
        let key = verify::parse_public_key(&pk, "test.pub").unwrap();
        let trusted = format!("timestamp:1\tfile:{file}\thashed");
        let sig = minisign::sign(None, &kp.sk, data, Some(&trusted), None)
            .unwrap()
            .to_string();
        let trust = TrustStore {
            keys: vec![key],
            ..Default::default()
        };
        (trust, sig)
    }

    #[test]
    fn the_list_must_be_signed_by_a_trusted_key_and_name_itself() {
        let sums = format!("{}  app-1.squashfs\n", "0".repeat(64));
        let (trust, sig) = signed(sums.as_bytes(), SUMS_FILE);
        assert_eq!(verify_list(&sums, &sig, &trust), Ok(()));
        let altered = sums.replace("app-1", "app-2");
        let e = verify_list(&altered, &sig, &trust).unwrap_err();
        assert!(e.contains("bad signature"), "{e}");
        let (trust2, other) = signed(sums.as_bytes(), "app-1.squashfs");
        let e = verify_list(&sums, &other, &trust2).unwrap_err();
        assert!(e.contains("a signed file renamed is refused"), "{e}");
        let e = verify_list(&sums, &sig, &trust2).unwrap_err();
        assert!(e.contains("not trusted"), "{e}");
    }
}
