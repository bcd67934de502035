//! `overboot`: the boot (as PID 1) and every command an operator runs on a build
//! host or in the booted system. The command line is declared in `cli`.

mod cli;

use overboot::kmod::modprobe;

fn main() {
    // The kernel starts us as /init with PID 1: boot (netboot included). Never returns.
    if overboot::pid1::is_pid1() {
        overboot::boot::main_net();
    }
    let args: Vec<String> = std::env::args().collect();
    // As /sbin/modprobe in an initramfs built with this binary (--binary).
    modprobe::exit_if_invoked_as_modprobe(&args);
    overboot::command::init_stderr_logger();
    std::process::exit(cli::main(std::env::args_os()));
}
