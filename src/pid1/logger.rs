//! The `log` backend for PID 1: every record goes to `/dev/kmsg` (so it lands in the
//! kernel log and later in the journal), and a short form is mirrored on the console.
//!
//! The mirror skips what the kernel already prints on the console itself: a `/dev/kmsg`
//! record whose level is below the console log level (first field of
//! `/proc/sys/kernel/printk`) is echoed by the kernel, so printing it again would show
//! every line twice. With `quiet` the kernel echoes only errors, and the mirror shows the
//! rest of what an operator should see (Info and above, or everything with debug).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, OnceLock};

/// Longest record written to `/dev/kmsg`, prefix included. The kernel refuses records
/// longer than about 1000 bytes (LOG_LINE_MAX); stay well under it.
pub const KMSG_LINE_MAX: usize = 900;

const TAG: &str = "overboot: ";
const PRINTK_DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";

/// Syslog level (as `/dev/kmsg` understands `<N>`) of a `log` level.
pub fn syslog_level(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The `/dev/kmsg` records for one message: one per line, each `<N>overboot: text`,
/// long lines cut (at character boundaries) so no record exceeds [`KMSG_LINE_MAX`].
pub fn kmsg_lines(syslog: u8, message: &str) -> Vec<String> {
    let prefix = format!("<{syslog}>{TAG}");
    let room = KMSG_LINE_MAX.saturating_sub(prefix.len() + 1).max(16);
    let mut out = Vec::new();
    for line in message.split('\n') {
        let line = line.trim_end_matches('\r');
        let mut rest = line;
        loop {
            let mut cut = rest.len().min(room);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = rest.split_at(cut);
            out.push(format!("{prefix}{head}\n"));
            if tail.is_empty() {
                break;
            }
            rest = tail;
        }
    }
    out
}

/// The console form of a log record: `overboot: text`, with `warning:`, `error:` or
/// `debug:` in front of the text for those levels; one line per line of the message.
pub fn console_line(level: log::Level, message: &str) -> String {
    let kind = match level {
        log::Level::Error => "error: ",
        log::Level::Warn => "warning: ",
        log::Level::Info => "",
        log::Level::Debug | log::Level::Trace => "debug: ",
    };
    let mut out = String::new();
    for line in message.split('\n') {
        out.push_str(TAG);
        out.push_str(kind);
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    out
}

/// The logger. Build it with [`init_logger`] (as PID 1) or [`KmsgLogger::with_files`].
pub struct KmsgLogger {
    kmsg: Option<File>,
    console: Option<File>,
    debug: bool,
    /// The kernel's console log level: records below it are echoed by the kernel.
    kernel_echo_below: u8,
}

impl KmsgLogger {
    /// Opens `/dev/kmsg` and `/dev/console`; either may be missing (then the other, or
    /// standard error, carries the messages).
    pub fn open(debug: bool) -> KmsgLogger {
        let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
        let console = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open("/dev/console")
            .ok();
        let level = std::fs::read_to_string("/proc/sys/kernel/printk")
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(7);
        KmsgLogger::with_files(kmsg, console, debug, level)
    }

    /// A logger writing to the given files; `kernel_console_loglevel` as in the first
    /// field of `/proc/sys/kernel/printk` (0 when nothing is echoed by the kernel).
    pub fn with_files(
        kmsg: Option<File>,
        console: Option<File>,
        debug: bool,
        kernel_console_loglevel: u8,
    ) -> KmsgLogger {
        KmsgLogger {
            kmsg,
            console,
            debug,
            kernel_echo_below: kernel_console_loglevel,
        }
    }

    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Writes `text` to `/dev/kmsg` at `syslog` level (one write per record); returns
    /// true when every record was accepted.
    fn to_kmsg(&self, syslog: u8, text: &str) -> bool {
        let Some(mut kmsg) = self.kmsg.as_ref() else {
            return false;
        };
        let mut all = true;
        for record in kmsg_lines(syslog, text) {
            if kmsg.write(record.as_bytes()).is_err() {
                all = false;
            }
        }
        all
    }

    /// Writes straight to the console (or standard error when it could not be opened).
    pub fn to_console(&self, text: &str) {
        match self.console.as_ref() {
            Some(mut console) => {
                let _ = console.write_all(text.as_bytes());
                let _ = console.flush();
            }
            None => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }
    }

    /// One message: to kmsg as `text`, and `console_text` to the console unless the
    /// kernel already echoes that level there. `always_console` ignores the debug filter.
    pub fn emit(&self, syslog: u8, text: &str, console_text: &str, always_console: bool) {
        let in_kmsg = self.to_kmsg(syslog, text);
        let wanted = always_console || syslog <= 6 || self.debug;
        let echoed = in_kmsg && syslog < self.kernel_echo_below;
        if wanted && !echoed {
            self.to_console(console_text);
        }
    }

    /// A block of lines (the fatal-error box) shown once, clean, on the console and
    /// recorded in kmsg at `syslog` level. The kernel's echo of these records is held
    /// back for the moment (console log level 1), so the console does not show the
    /// block twice, once with timestamps.
    pub fn emit_block(&self, syslog: u8, lines: &[String]) {
        const PRINTK: &str = "/proc/sys/kernel/printk";
        let mut echo_held = false;
        let mut saved = None;
        if self.kmsg.is_some()
            && syslog < self.kernel_echo_below
            && let Ok(previous) = std::fs::read_to_string(PRINTK)
            && std::fs::write(PRINTK, "1\n").is_ok()
        {
            echo_held = true;
            saved = Some(previous);
        }
        let mut all_in_kmsg = true;
        for line in lines {
            all_in_kmsg &= self.to_kmsg(syslog, line);
        }
        if let Some(previous) = saved {
            let _ = std::fs::write(PRINTK, previous);
        }
        if echo_held || !all_in_kmsg || syslog >= self.kernel_echo_below {
            let mut text = String::new();
            for line in lines {
                text.push_str(line);
                text.push('\n');
            }
            self.to_console(&text);
        }
    }
}

impl log::Log for KmsgLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Debug || self.debug
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let console = console_line(record.level(), &text);
        self.emit(syslog_level(record.level()), &text, &console, false);
    }

    fn flush(&self) {}
}

static LOGGER: OnceLock<KmsgLogger> = OnceLock::new();
static SAVED_DEVKMSG: Mutex<Option<String>> = Mutex::new(None);

/// The process-wide logger, opened on first use (debug off unless [`init_logger`] said).
pub(crate) fn logger() -> &'static KmsgLogger {
    LOGGER.get_or_init(|| KmsgLogger::open(false))
}

/// Installs [`KmsgLogger`] as the `log` backend (call after `/dev` and `/proc` are
/// mounted) and turns the `/dev/kmsg` rate limit off until [`restore_printk_devkmsg`].
/// With `/dev/kmsg` unavailable everything goes to the console.
pub fn init_logger(debug: bool) {
    let logger = LOGGER.get_or_init(|| KmsgLogger::open(debug));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(if logger.debug {
            log::LevelFilter::Trace
        } else {
            log::LevelFilter::Debug
        });
    }
    devkmsg_on();
}

/// Saves `printk_devkmsg` and sets it to `on` (no rate limit on our records).
fn devkmsg_on() {
    let Ok(previous) = std::fs::read_to_string(PRINTK_DEVKMSG) else {
        return;
    };
    let previous = previous.trim().to_string();
    if previous == "on" {
        return;
    }
    // The kernel wants exactly one trailing newline. Refused when the command line
    // fixed the value (printk.devkmsg=): then it stays as it is.
    if std::fs::write(PRINTK_DEVKMSG, "on\n").is_ok()
        && let Ok(mut saved) = SAVED_DEVKMSG.lock()
        && saved.is_none()
    {
        *saved = Some(previous);
    }
}

/// Puts back the `printk_devkmsg` value [`init_logger`] replaced (if it replaced one),
/// so the booted system gets the kernel's rate limit again. Call just before the exec.
pub fn restore_printk_devkmsg() {
    let previous = match SAVED_DEVKMSG.lock() {
        Ok(mut saved) => saved.take(),
        Err(_) => None,
    };
    if let Some(previous) = previous
        && let Err(e) = std::fs::write(PRINTK_DEVKMSG, format!("{previous}\n"))
    {
        log::warn!("could not restore {PRINTK_DEVKMSG} to '{previous}': {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log;
    use std::io::{Read, Seek};

    #[test]
    fn levels_map_to_syslog() {
        assert_eq!(syslog_level(log::Level::Error), 3);
        assert_eq!(syslog_level(log::Level::Warn), 4);
        assert_eq!(syslog_level(log::Level::Info), 6);
        assert_eq!(syslog_level(log::Level::Debug), 7);
    }

    #[test]
    fn one_record_per_line_with_prefix() {
        let lines = kmsg_lines(6, "first\nsecond");
        assert_eq!(lines, vec!["<6>overboot: first\n", "<6>overboot: second\n"]);
    }

    #[test]
    fn long_lines_are_cut_under_the_limit_at_char_boundaries() {
        let long = "é".repeat(2000); // 4000 bytes
        let lines = kmsg_lines(3, &long);
        assert!(lines.len() >= 5, "{}", lines.len());
        let mut joined = String::new();
        for l in &lines {
            assert!(l.len() <= KMSG_LINE_MAX, "{}", l.len());
            let body = l
                .strip_prefix("<3>overboot: ")
                .unwrap()
                .strip_suffix('\n')
                .unwrap();
            joined.push_str(body);
        }
        assert_eq!(joined, long);
    }

    #[test]
    fn console_form_names_the_level() {
        assert_eq!(console_line(log::Level::Info, "up"), "overboot: up\n");
        assert_eq!(
            console_line(log::Level::Warn, "a\nb"),
            "overboot: warning: a\noverboot: warning: b\n"
        );
        assert_eq!(console_line(log::Level::Error, "x"), "overboot: error: x\n");
    }

    fn read_back(mut f: &File) -> String {
        let mut s = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut s).unwrap();
        s
    }

    fn tmpfile(dir: &std::path::Path, name: &str) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(name))
            .unwrap()
    }

    fn record(logger: &KmsgLogger, level: log::Level, text: &str) {
        logger.log(
            &log::Record::builder()
                .level(level)
                .args(format_args!("{text}"))
                .build(),
        );
    }

    #[test]
    fn logger_writes_kmsg_and_mirrors_what_the_kernel_does_not_echo() {
        let dir = std::env::temp_dir().join(format!("overboot-logger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kmsg = tmpfile(&dir, "kmsg");
        let console = tmpfile(&dir, "console");
        // console_loglevel 4 (as with `quiet`): the kernel echoes only errors.
        let logger = KmsgLogger::with_files(
            Some(kmsg.try_clone().unwrap()),
            Some(console.try_clone().unwrap()),
            false,
            4,
        );
        record(&logger, log::Level::Info, "found BootExt");
        record(&logger, log::Level::Error, "bad image");
        record(&logger, log::Level::Debug, "detail");
        assert_eq!(
            read_back(&kmsg),
            "<6>overboot: found BootExt\n<3>overboot: bad image\n<7>overboot: detail\n"
        );
        assert_eq!(read_back(&console), "overboot: found BootExt\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_block_is_recorded_and_shown_once() {
        let dir = std::env::temp_dir().join(format!("overboot-logger3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kmsg = tmpfile(&dir, "kmsg");
        let console = tmpfile(&dir, "console");
        // Console log level 0: the kernel echoes nothing, so the block is printed here.
        let logger = KmsgLogger::with_files(
            Some(kmsg.try_clone().unwrap()),
            Some(console.try_clone().unwrap()),
            false,
            0,
        );
        logger.emit_block(2, &["+--+".to_string(), "|hi|".to_string()]);
        assert_eq!(read_back(&kmsg), "<2>overboot: +--+\n<2>overboot: |hi|\n");
        assert_eq!(read_back(&console), "+--+\n|hi|\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_kmsg_everything_goes_to_the_console() {
        let dir = std::env::temp_dir().join(format!("overboot-logger2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let console = tmpfile(&dir, "console");
        let logger = KmsgLogger::with_files(None, Some(console.try_clone().unwrap()), true, 7);
        record(&logger, log::Level::Error, "bad image");
        record(&logger, log::Level::Debug, "detail");
        assert_eq!(
            read_back(&console),
            "overboot: error: bad image\noverboot: debug: detail\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
