//! dm-verity (issue 12): images checked block by block as they are read, against a
//! Merkle tree whose root hash is checked (and its signature) once at boot.
//! `format` is the on-disk layout and the table line (pure); `seal` writes the files
//! beside an image (not on the boot path); `boot` checks a seal and mounts through
//! dm-verity (`sys::dm`).

pub mod boot;
pub mod corrupted;
pub mod fec;
pub mod format;
pub mod seal;
pub mod watch;
