use overboot::cli;
use overboot::kmod::modprobe;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The kernel starts us as /init with PID 1: boot. Never returns.
    if overboot::pid1::is_pid1() {
        overboot::boot::main();
    }
    // As /sbin/modprobe in an initramfs built with this binary (--binary).
    modprobe::exit_if_invoked_as_modprobe(&args);
    cli::init_stderr_logger();
    let rest = args.get(2..).unwrap_or(&[]);
    let code = match args.get(1).map(String::as_str) {
        Some("assemble") => cli::assemble_main(rest),
        Some("plan") => cli::plan_main(rest),
        Some("check") => cli::check_main(rest),
        Some("status") => cli::status_main(rest),
        Some("set-active") => cli::trial::set_active_main(rest),
        Some("bless") => cli::trial::bless_main(rest),
        Some("rollback") => cli::trial::rollback_main(rest),
        Some("mkinitramfs") => overboot::initramfs::main(rest),
        Some("seal") => overboot::verity::seal::main(rest),
        Some("publish") => overboot::publish::main(rest),
        Some("mkuki") => overboot::uki::main(rest),
        Some("update") => overboot::update::main(rest),
        Some("help" | "--help" | "-h") => {
            println!("{}", cli::USAGE);
            0
        }
        Some("--version") => {
            println!("overboot {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(other) => {
            eprintln!("overboot: unknown command '{other}'\n\n{}", cli::USAGE);
            2
        }
        None => {
            eprintln!("{}", cli::USAGE);
            2
        }
    };
    std::process::exit(code);
}
