//! The build of overboot that goes into the initramfs as `/init`: the boot (as PID 1)
//! and `assemble`, nothing else. The commands an operator runs on a build host or in
//! the booted system (`plan`, `check`, `status`, `mkinitramfs`, …) live in `overboot`;
//! leaving them out here lets link-time optimisation drop their code (the offline
//! squashfs reader among it), which keeps the initramfs small (bench/boot.md).
//! `overboot-init-net` is the same with netboot (`overboot.fetch=`).

fn main() {
    overboot::boot::init_main("overboot-init", overboot::boot::main)
}
