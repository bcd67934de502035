//! Private keys never belong with the boot material on BootExt: whoever holds the
//! stick could sign kernel images (the Secure Boot db key) or system images (a
//! minisign secret key) with them, and the chain of trust would be worth nothing.
//! `check` refuses any it finds: a file named `*.key`, a PEM private key, or a
//! minisign secret key.
//!
//! The folders that hold the appliance's own files (`DIRS/`, `Overlay/`, `Apps/`,
//! `Units/`, `Persist/`) are not searched: an appliance keeps its SSH host keys or its
//! TLS key there, on purpose.

use crate::sys::confined::Confined;
use rustix::fs::FileType;
use std::io::Read;

/// Folders of the appliance's own files, not searched.
pub const APPLIANCE_FOLDERS: [&str; 5] = ["DIRS", "Overlay", "Apps", "Units", "Persist"];

/// How much of a file is looked at, and the bounds of the walk.
const HEAD: u64 = 4096;
const MAX_DEPTH: usize = 16;
const MAX_ENTRIES: usize = 20_000;

/// A minisign secret key's second line: base64 of "Ed", the KDF ("Sc" for scrypt, or
/// none) and "B2" (BLAKE2b). Public keys and signatures (whose comment also says
/// "secret key") start otherwise.
const MINISIGN_SECRET: [&[u8]; 2] = [b"RWRTY0Iy", b"RWQAAEIy"];

/// Whether a file named `name` that begins with `head` is a private key.
pub fn is_private_key(name: &str, head: &[u8]) -> bool {
    let minisign_secret = head.starts_with(b"untrusted comment:")
        && head
            .split(|&b| b == b'\n')
            .nth(1)
            .is_some_and(|line| MINISIGN_SECRET.iter().any(|p| line.starts_with(p)));
    name.to_ascii_lowercase().ends_with(".key")
        || contains(head, b"PRIVATE KEY-----")
        || minisign_secret
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn head(be: &Confined, rel: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(fd) = be.open_file(rel) {
        let _ = std::fs::File::from(fd).take(HEAD).read_to_end(&mut bytes);
    }
    bytes
}

/// One error line per private key on BootExt, outside the appliance's folders.
pub fn find(be: &Confined) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![(String::new(), 0usize)];
    let mut seen = 0;
    while let Some((dir, depth)) = dirs.pop() {
        let names = be
            .list(if dir.is_empty() { "." } else { &dir })
            .unwrap_or_default();
        for name in names {
            seen += 1;
            if seen > MAX_ENTRIES {
                found.push(format!(
                    "more than {MAX_ENTRIES} files outside {}: not all searched for private keys",
                    APPLIANCE_FOLDERS.join("/, ")
                ));
                return found;
            }
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            match be.lstat_type(&rel) {
                Ok(FileType::Directory) if dir.is_empty() && APPLIANCE_FOLDERS.contains(&name.as_str()) => {}
                Ok(FileType::Directory) if depth < MAX_DEPTH => dirs.push((rel, depth + 1)),
                Ok(FileType::RegularFile) if is_private_key(&name, &head(be, &rel)) => {
                    found.push(format!(
                        "{rel}: a private key on BootExt: anyone with the volume could sign with it; \
                         keep it on the build machine (BootExt needs only the certificate or public key)"
                    ))
                }
                _ => {}
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_are_known_by_name_or_content() {
        assert!(is_private_key("db.key", b""));
        assert!(is_private_key("DB.KEY", b"anything"));
        assert!(is_private_key(
            "signing",
            b"-----BEGIN PRIVATE KEY-----\nMII"
        ));
        assert!(is_private_key(
            "x.pem",
            b"-----BEGIN RSA PRIVATE KEY-----\n"
        ));
        assert!(is_private_key(
            "secret",
            b"untrusted comment: minisign encrypted secret key\nRWRTY0IyJ8Bq"
        ));
        assert!(is_private_key(
            "secret",
            b"untrusted comment: minisign secret key\nRWQAAEIyAAAA"
        ));
        // A signature's comment names the secret key; it is not one.
        assert!(!is_private_key(
            "a.squashfs.minisig",
            b"untrusted comment: signature from minisign secret key\nRUQ7kqXy"
        ));
        assert!(!is_private_key("db.crt", b"-----BEGIN CERTIFICATE-----\n"));
        assert!(!is_private_key(
            "a.pub",
            b"untrusted comment: minisign public key 1234\nRWQ"
        ));
        // "secret key" later in a file that is not a key.
        assert!(!is_private_key(
            "README",
            b"untrusted comment: notes\nthe secret key stays away\n"
        ));
    }

    #[test]
    fn found_in_boot_folders_not_in_the_appliance_ones() {
        let dir = std::env::temp_dir().join(format!("overboot-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in [
            "SecureBoot",
            "Kernel/old",
            "DIRS/DIR_etc_ssl",
            "Persist/upper",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.join("SecureBoot/db.key"), "x").unwrap();
        std::fs::write(
            dir.join("SecureBoot/db.crt"),
            "-----BEGIN CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(dir.join("Kernel/old/signer.pem"), pem).unwrap();
        std::fs::write(dir.join("DIRS/DIR_etc_ssl/server.key"), pem).unwrap();
        std::fs::write(dir.join("Persist/upper/x.key"), pem).unwrap();
        let be = Confined::open(&dir).unwrap();
        let found = find(&be);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("Kernel/old/signer.pem: a private key"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("SecureBoot/db.key: a private key"),
            "{found:?}"
        );
    }
}
