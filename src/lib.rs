//! overboot: early-boot overlay assembler for read-only appliance systems.
//!
//! Pure modules (data in, data out, unit-tested without root): `cmdline`,
//! `manifest`, `names`, `superblock`, `plan`, `state`. The thin layer that touches
//! the kernel lives in `sys`. `assemble` runs a plan with `sys`; `cli` is the
//! command-line front end.

pub mod cmdline;
pub mod initramfs;
pub mod kmod;
