//! `overboot-init` with netboot (`overboot.fetch=URL`: DHCP, HTTP, the image into
//! RAM). A build of its own because the network code does not fit in the 1 MB
//! initramfs budget of `overboot-init`; `mkinitramfs` puts it in when the initramfs
//! carries network drivers (`--modules net`, or the default, every group).

fn main() {
    overboot::boot::init_main("overboot-init-net", overboot::boot::main_net)
}
