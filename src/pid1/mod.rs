//! PID 1 building blocks: the pieces the boot (`crate::boot`) strings together when
//! overboot runs as `/init`.
//!
//! - [`early_mounts`]: `/proc`, `/sys`, `/dev`, `/run`.
//! - [`init_logger`]: the `log` backend writing to `/dev/kmsg`, mirrored on the console.
//! - [`Fatal`], [`fail`], [`guard`], [`install_panic_hook`]: the failure policy, so PID 1
//!   never exits and never unwinds.
//! - [`switch_root`]: the hand-off to the real init.
//!
//! Pure parts (message formatting, line splitting, policy choice, init candidates) are
//! separate functions with unit tests; the rest touches the kernel through `rustix`.

mod fail;
mod logger;
mod mounts;
mod switch;

pub use fail::{
    Fatal, fail, format_fatal, guard, install_panic_hook, resolve_policy, set_failure_policy,
};
pub use logger::{
    KmsgLogger, console_line, init_logger, kmsg_lines, restore_printk_devkmsg, syslog_level,
};
pub use mounts::early_mounts;
pub use switch::{
    DEFAULT_INIT_CANDIDATES, find_init, init_candidates, is_mount_point, remove_tree_same_dev,
    switch_root,
};

/// True when this process is PID 1 (the kernel started it as init).
pub fn is_pid1() -> bool {
    rustix::process::getpid().is_init()
}

/// The kernel command line from `/proc/cmdline`, without the trailing newline;
/// empty when it cannot be read (e.g. `/proc` is not mounted yet).
pub fn read_cmdline() -> String {
    match std::fs::read_to_string("/proc/cmdline") {
        Ok(text) => text.trim_end_matches(['\n', '\0']).to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_is_read_from_proc() {
        let raw = std::fs::read_to_string("/proc/cmdline").unwrap();
        let got = read_cmdline();
        assert_eq!(got, raw.trim_end());
        assert!(!got.ends_with('\n'));
    }

    #[test]
    fn a_test_process_is_not_pid1() {
        assert!(!is_pid1());
    }
}
