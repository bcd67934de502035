//! overboot: early-boot overlay assembler for read-only appliance systems.
//!
//! Pure modules (data in, data out, unit-tested without root): `cmdline`,
//! `manifest`, `names`, `superblock`, `plan`, `state`. The thin layer that touches
//! the kernel lives in `sys`. `select` and `bootext` read BootExt through it;
//! `assemble` runs a plan with it; `command` is what the two binaries share on their
//! command lines (the `overboot` binary declares its own in `src/cli/`).

pub mod apps;
pub mod assemble;
pub mod boot;
pub mod bootext;
pub mod calendar;
pub mod chunks;
pub mod cmdline;
pub mod command;
pub mod imagetree;
pub mod initramfs;
pub mod kmod;
pub mod landing;
pub mod layers;
pub mod manifest;
pub mod names;
pub mod net;
pub mod pid1;
pub mod plan;
pub mod preview;
pub mod private_keys;
pub mod probe;
pub mod publish;
pub mod select;
pub mod state;
pub mod suggest;
pub mod superblock;
pub mod sys;
pub mod trial;
pub mod trial_boot;
pub mod uki;
pub mod units;
pub mod update;
pub mod verify;
pub mod verity;
