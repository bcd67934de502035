//! The build of overboot that goes into the initramfs as `/init`: the boot (as PID 1)
//! and `assemble`, nothing else. The commands an operator runs on a build host or in
//! the booted system (`plan`, `check`, `status`, `mkinitramfs`, …) live in `overboot`;
//! leaving them out here lets link-time optimisation drop their code (the offline
//! squashfs reader among it), which keeps the initramfs small (bench/boot.md).

use overboot::command;
use overboot::kmod::modprobe;

const USAGE: &str = "\
overboot-init: overboot's initramfs build. Run by the kernel as /init (PID 1), it boots
the appliance (DESIGN section 2). By hand it only knows:
  overboot-init assemble --bootext DIR --root DIR [--cmdline STR] [--state FILE]
                         [--trust-keys DIR] [--meminfo FILE] [--run-dir DIR]
  overboot-init --version
Every other command is in `overboot` (see overboot assemble --help).";

/// Tells `mkinitramfs` that this build never unwinds, so the copy in the initramfs
/// can do without unwind tables (`overboot::initramfs::elf`).
#[cfg(panic = "abort")]
static NEVER_UNWINDS: [u8; 42] = *b"overboot-init: panic=abort, never unwinds\0";

fn main() {
    // Keeps the marker through link-time optimisation.
    #[cfg(panic = "abort")]
    std::hint::black_box(&NEVER_UNWINDS);
    if overboot::pid1::is_pid1() {
        overboot::boot::main();
    }
    let args: Vec<String> = std::env::args().collect();
    // /sbin/modprobe in the initramfs is a link to /init: the kernel asking for a
    // module (overboot::kmod::modprobe).
    modprobe::exit_if_invoked_as_modprobe(&args);
    command::init_stderr_logger();
    let rest = args.get(2..).unwrap_or(&[]);
    let code = match args.get(1).map(String::as_str) {
        Some("assemble") => match command::parse_assemble(rest) {
            Ok(Some(o)) => command::assemble(&o),
            Ok(None) => {
                println!("{USAGE}");
                0
            }
            Err(e) => {
                eprintln!("overboot-init: {e}\n\n{USAGE}");
                2
            }
        },
        Some("--version") => {
            println!("overboot-init {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            0
        }
        Some(other) => {
            eprintln!("overboot-init: unknown command '{other}'\n\n{USAGE}");
            2
        }
        None => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
