//! The `overboot` command line, declared once: every command is a struct below, and
//! its help, the man page, the shell completions and the README's table come from
//! these declarations. Each handler is short and lives in `src/cli/<command>.rs`;
//! the work is done by the library (`overboot::...`).
//!
//! Exit codes everywhere: 0 success, 1 failure (one message on stderr, prefixed
//! `overboot: `), 2 bad usage. `overboot-init` (the initramfs build) does not link
//! this: it parses the one command it knows by hand (`overboot::command`).

mod check;
mod generate;
mod images;
mod inspect;
mod plan;
mod status;
mod trial;
mod verity_watch;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// Where the booted system sees BootExt.
const DEFAULT_BOOTEXT: &str = overboot::assemble::BOOTEXT_AT;

#[derive(Parser)]
#[command(
    name = "overboot",
    version,
    about = "Early-boot overlay assembler for read-only appliance systems",
    long_about = "Early-boot overlay assembler for read-only appliance systems.\n\n\
        Run by the kernel as /init (PID 1) it boots: finds BootExt, assembles the root \
        (the system image read-only, a writable overlay, the DIRS/ and manifest \
        overmounts) and switches to it. The commands below preview, check and inspect \
        that from a build host or the booted system.",
    after_help = "Exit codes: 0 success, 1 failure (message on stderr), 2 bad usage.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Assemble(AssembleArgs),
    Plan(PlanArgs),
    Check(CheckArgs),
    Status(StatusArgs),
    Images(ImagesArgs),
    SetActive(SetActiveArgs),
    Bless(BlessArgs),
    Rollback(RollbackArgs),
    Mkinitramfs(MkinitramfsArgs),
    Inspect(InspectArgs),
    Seal(SealArgs),
    VerityWatch(VerityWatchArgs),
    Publish(PublishArgs),
    Update(UpdateArgs),
    Mkuki(MkukiArgs),
    /// Print the man page, shell completions or README table made from this declaration
    #[command(hide = true, subcommand)]
    Generate(Generated),
}

/// What `overboot generate` makes (`cli::generate`).
#[derive(Subcommand)]
enum Generated {
    /// overboot(8), roff
    Man,
    /// Completions for a shell
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// The README's command table (Markdown)
    ReadmeTable,
}

/// The mounted BootExt, for commands that read it.
#[derive(Args)]
struct BootExtArg {
    /// The mounted BootExt
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BOOTEXT)]
    bootext: PathBuf,
}

/// The keys the boot will trust, for `plan` and `check`, which verify as it does.
#[derive(Args)]
struct TrustArgs {
    /// The keys the boot's initramfs trusts (*.pub) [default: /etc/overboot/trusted-keys]
    #[arg(long, value_name = "DIR")]
    trust_keys: Option<PathBuf>,
    /// The initramfs that will boot: its keys are trusted (any compression)
    #[arg(long, value_name = "FILE")]
    initramfs: Option<PathBuf>,
}

impl TrustArgs {
    fn store(&self) -> Result<overboot::verify::TrustStore, i32> {
        overboot::preview::trust_from(self.trust_keys.as_deref(), self.initramfs.as_deref())
            .map_err(|e| fail(format!("--initramfs: {e}")))
    }
}

/// What `check` and `images` judge: BootExt, with the keys the boot will trust.
#[derive(Args)]
struct Judged {
    #[command(flatten)]
    bootext: BootExtArg,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    json: JsonArg,
}

/// `--json`: the report as JSON (`"version": 1`) instead of text.
#[derive(Args)]
struct JsonArg {
    /// Print the report as JSON ("version": 1) instead of text
    #[arg(long)]
    json: bool,
}

/// Assemble the root from BootExt into DIR, as the boot does, without switching to it
///
/// Select the system image on BootExt, mount it read-only with a tmpfs overlay on
/// ROOT, make the DIRS/ and manifest overmounts, publish BootExt, image and overlay at
/// /mnt/cdrom, /mnt/livecd, /mnt/overlay, and write the state file.
#[derive(Args)]
struct AssembleArgs {
    /// The BootExt tree to assemble from
    #[arg(long, value_name = "DIR")]
    bootext: PathBuf,
    /// Where to assemble the new root
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Kernel command line to obey [default: /proc/cmdline]
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    /// Where to write the record of the boot
    #[arg(long, value_name = "FILE", default_value = overboot::state::STATE_PATH)]
    state: PathBuf,
    /// Trusted minisign keys (*.pub)
    #[arg(long, value_name = "DIR", default_value = overboot::verify::TRUST_DIR)]
    trust_keys: PathBuf,
    /// Read MemAvailable for overboot.toram from FILE (tests)
    #[arg(long, value_name = "FILE", default_value = "/proc/meminfo")]
    meminfo: PathBuf,
    /// Where Units/ are installed, as DIR/systemd/system/
    #[arg(long, value_name = "DIR", default_value = "/run")]
    run_dir: PathBuf,
}

/// Print the ordered mount plan for a BootExt tree; mounts nothing
///
/// The image is chosen and verified as the boot does, and names are decoded against
/// it, read through a detached read-only loop mount (as root) or in user space.
#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    bootext: BootExtArg,
    /// Kernel command line to plan for [default: /proc/cmdline]
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    json: JsonArg,
}

/// Validate a BootExt tree before it goes onto a stick
///
/// System links and images (verified as the boot does), DIRS/ names and their
/// decoded targets, conflicts, the manifest. One line per problem; exit 1 if any is
/// an error: whatever the boot would refuse, drop or skip.
#[derive(Args)]
struct CheckArgs {
    /// The BootExt tree (same as --bootext DIR)
    #[arg(value_name = "DIR", conflicts_with = "bootext")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    on: Judged,
}

/// What this boot did: image, fallbacks, mounts, timings (from the state file)
///
/// In the booted system: which image booted, from where and why, fallbacks, every
/// overmount made and skipped, and the time each step took.
#[derive(Args)]
struct StatusArgs {
    /// The record of the boot
    #[arg(long, value_name = "FILE", default_value = overboot::state::STATE_PATH)]
    state: PathBuf,
    /// The mounted BootExt, for the last `overboot update` (System/last-update.json)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BOOTEXT)]
    bootext: PathBuf,
    #[command(flatten)]
    json: JsonArg,
}

/// The system images on BootExt: active, previous, recovery, trial, and whether each boots
///
/// As `rauc status` shows slots: every image in System/ with the links and the trial
/// that name it (boots left), its size and compression, and whether the boot would
/// take it with the keys at hand (superblock, checksum, signature, a readable tree),
/// or why not.
#[derive(Args)]
struct ImagesArgs {
    #[command(flatten)]
    on: Judged,
}

/// Make IMAGE the active system image, atomically (optionally as a trial)
///
/// IMAGE is a squashfs file in System/ on BootExt: NAME, System/NAME or a path. The
/// image active before is kept as System/previous-system (the image to return to).
/// With --tries N the switch is a trial: each boot counts down System/trial;
/// `overboot bless` in the booted system makes it permanent; a trial that runs out
/// boots the previous image again and makes it active. An image the boot would refuse
/// (superblock, checksum, signature, unreadable) is refused first.
#[derive(Args)]
struct SetActiveArgs {
    /// The image to boot from now on
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Make the switch a trial of N boots
    #[arg(long, value_name = "N")]
    tries: Option<u32>,
    #[command(flatten)]
    bootext: BootExtArg,
    /// The keys the boot trusts (*.pub)
    #[arg(long, value_name = "DIR", default_value = overboot::verify::TRUST_DIR)]
    trust_keys: PathBuf,
    /// Switch even to an image the boot would refuse (it then falls back)
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: JsonArg,
}

/// End the trial of the image that booted: it stays active for good
///
/// In the booted system, once it is healthy. Without a trial in progress, nothing to
/// do (exit 0).
#[derive(Args)]
struct BlessArgs {
    #[command(flatten)]
    bootext: BootExtArg,
    /// The record of the boot, to check this boot is the trial image
    #[arg(long, value_name = "FILE", default_value = overboot::state::STATE_PATH)]
    state: PathBuf,
    #[command(flatten)]
    json: JsonArg,
}

/// Swap System/active-system and System/previous-system, ending any trial
///
/// Takes effect at the next boot; a second rollback goes forward again.
#[derive(Args)]
struct RollbackArgs {
    #[command(flatten)]
    bootext: BootExtArg,
    #[command(flatten)]
    json: JsonArg,
}

/// Build a standalone initramfs with overboot-init as /init
///
/// FILE gets /init (overboot-init, a static binary), the kernel modules a boot needs
/// with a reduced depmod index under /lib/modules/VER/, /dev/console, /dev/null, and
/// /sbin/modprobe -> /init (for modules the kernel asks for itself, such as a FAT
/// mount's codepage).
#[derive(Args)]
#[command(after_help = overboot::initramfs::groups_help())]
struct MkinitramfsArgs {
    /// Where to write the initramfs
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Kernel version [default: the directory name of --modules-dir, else uname -r]
    #[arg(long, value_name = "VER")]
    kver: Option<String>,
    /// Modules to take [default: /lib/modules/VER]
    #[arg(long, value_name = "DIR")]
    modules_dir: Option<PathBuf>,
    /// Comma-separated groups (below) or module names; loop, squashfs and overlay are
    /// always in; host: the drivers of this machine's disks and keyboard and the
    /// filesystems mounted from its disks (build on the target) [default: all]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    modules: Vec<String>,
    /// lz4 (the kernel unpacks it fastest; legacy format, lz4 -l; default when the lz4
    /// command exists, else zstd, else gzip), xz (the smallest image), zstd, gzip or none
    #[arg(long, value_name = "ALGO", value_parser = compression)]
    compress: Option<overboot::initramfs::Compression>,
    /// Build even when a module named in --modules is not in the kernel (otherwise an
    /// error: a misspelt driver would leave the appliance without its disk)
    #[arg(long)]
    allow_missing: bool,
    /// Add /bin/busybox (a static busybox) and /bin/sh, for the emergency shell
    #[arg(long)]
    add_shell: bool,
    /// The /init to put in [default: overboot-init next to this program, or in
    /// ../lib/overboot/, else this program]
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,
    /// Trust this minisign public key (repeatable); with a key baked in, only images
    /// with a good System/<image>.minisig boot
    #[arg(long, value_name = "FILE")]
    trust_key: Vec<PathBuf>,
    /// CA certificates (PEM; repeatable) that https:// netboot trusts, instead of
    /// this machine's bundle (/etc/ssl/certs/ca-certificates.crt), which the
    /// network group otherwise carries
    #[arg(long, value_name = "FILE")]
    net_ca: Vec<PathBuf>,
}

/// List what an initramfs holds: entries, kernel modules, trusted keys, /init
///
/// As lsinitramfs -l: every entry with its type, permissions and size (any
/// compression mkinitramfs writes, and concatenated archives), then the kernel
/// modules and for which kernel, the keys the boot will trust, and /init.
#[derive(Args)]
struct InspectArgs {
    /// The initramfs
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    json: JsonArg,
}

/// Write IMAGE.verity and IMAGE.roothash beside IMAGE (dm-verity)
///
/// The hash tree is in veritysetup's format; with --sign, also
/// IMAGE.roothash.minisig (signed in-process, as publish signs; no minisign binary).
#[derive(Args)]
struct SealArgs {
    /// The squashfs image to seal
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
    /// Sign the root hash with this minisign secret key (encrypted keys take their
    /// password from $OVERBOOT_SIGN_PASSWORD)
    #[arg(long, value_name = "SECRET.key")]
    sign: Option<PathBuf>,
    /// Also write IMAGE.fec, Reed-Solomon parity (2 roots) with which the kernel
    /// repairs a corrupted block (as veritysetup format --fec-device)
    #[arg(long)]
    fec: bool,
}

/// Record a dm-verity corruption for the next boot, then act (run by a unit)
///
/// In the booted system (overboot-verity.service): listens for the kernel's report
/// of a corrupted block on a sealed image of this boot (and reads the kernel log for
/// the ones before it listened), writes
/// System/verity-corrupted on BootExt (the next boot refuses that image: a system
/// image falls back to recovery), then restarts, panics or goes on as
/// overboot.verity-error says (restart by default). Exits 0 at once when no sealed
/// image is mounted.
#[derive(Args)]
struct VerityWatchArgs {
    /// The record of the boot (which images are sealed, their dm devices)
    #[arg(long, value_name = "FILE", default_value = overboot::state::STATE_PATH)]
    state: PathBuf,
    #[command(flatten)]
    bootext: BootExtArg,
}

/// Write a directory that any HTTP server serves to `overboot update`
///
/// Each IMAGE with its minisign signature (NAME.minisig), its chunk index
/// (NAME.chunks, for downloads of only what changed), NAME.verity and NAME.roothash
/// when they lie beside it, and a signed SHA256SUMS (+ SHA256SUMS.minisig) listing
/// them all, merged with the one already in DIR.
#[derive(Args)]
struct PublishArgs {
    /// The images to publish
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<PathBuf>,
    /// Minisign secret key (minisign -G; encrypted keys take their password from
    /// $OVERBOOT_SIGN_PASSWORD)
    #[arg(long, value_name = "SECRET.key")]
    sign: PathBuf,
    /// The directory to publish into (created if missing)
    #[arg(short = 'o', value_name = "DIR")]
    out: PathBuf,
}

/// Fetch, verify and install the newest image from an update server, as a trial
///
/// Fetch the newest image from URL (a directory made by `overboot publish`; default:
/// [update] url in BootExt's overboot.toml), verify it, download only the chunks the
/// local images lack (resuming an interrupted download), install it in System/ and
/// make it active for a trial of N boots (bless/rollback do the rest).
#[derive(Args)]
struct UpdateArgs {
    /// The published directory [default: [update] url in overboot.toml]
    #[arg(value_name = "URL")]
    url: Option<String>,
    /// This image instead of the newest
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    /// Boots the trial may take before it rolls back
    #[arg(long, value_name = "N", default_value_t = 3)]
    tries: u32,
    /// Keep at most K images besides the active, previous, recovery and new ones
    /// (oldest deleted first) [default: delete nothing]
    #[arg(long, value_name = "K")]
    keep: Option<usize>,
    #[command(flatten)]
    bootext: BootExtArg,
    /// Trusted minisign keys (*.pub) [default: the running initramfs's, which the
    /// boot leaves in /run/overboot/trusted-keys, and /etc/overboot/trusted-keys]
    #[arg(long, value_name = "DIR")]
    trust_keys: Option<PathBuf>,
    /// A private CA for https (PEM, one or more certificates; repeatable), trusted
    /// besides the system's [default: [update] ca in overboot.toml]
    #[arg(long, value_name = "FILE")]
    ca: Vec<PathBuf>,
    /// Seconds for connecting, the response, and each read
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    json: JsonArg,
}

/// Build a unified kernel image (kernel, initramfs and command line in one EFI program)
///
/// VMLINUZ, INITRD (from overboot mkinitramfs) and the kernel command line STR in one
/// EFI program on systemd's stub (.osrel, .cmdline, .initrd, .linux sections, as
/// ukify makes them), signed with sbsign when KEY and CERT (PEM) are given. Under
/// Secure Boot the baked-in command line is the only one used. Needs objcopy
/// (binutils) and, to sign, sbsign (sbsigntool).
#[derive(Args)]
struct MkukiArgs {
    /// Where to write the image
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The kernel (with its EFI stub)
    #[arg(long, value_name = "VMLINUZ")]
    kernel: PathBuf,
    /// The initramfs
    #[arg(long, value_name = "INITRD")]
    initrd: PathBuf,
    /// The kernel command line to bake in
    #[arg(long, value_name = "STR", default_value = "")]
    cmdline: String,
    /// The .osrel section [default: NAME=overboot]
    #[arg(long, value_name = "FILE")]
    os_release: Option<PathBuf>,
    /// The EFI stub [default: /usr/lib/systemd/boot/efi/linuxx64.efi.stub]
    #[arg(long, value_name = "FILE")]
    stub: Option<PathBuf>,
    /// Sign with this key (PEM; with --sign-cert)
    #[arg(long, value_name = "KEY", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The certificate of --sign-key (PEM)
    #[arg(long, value_name = "CERT", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
}

/// Parse the command line and run the command; returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    match cli.command {
        Command::Assemble(a) => overboot::command::assemble(&overboot::command::AssembleOptions {
            bootext: a.bootext,
            root: a.root,
            cmdline: a.cmdline,
            state: Some(a.state),
            trust_keys: Some(a.trust_keys),
            meminfo: Some(a.meminfo),
            run_dir: Some(a.run_dir),
        }),
        Command::Plan(a) => match a.trust.store() {
            Ok(trust) => plan::run(&a.bootext.bootext, a.cmdline.as_deref(), trust, a.json.json),
            Err(code) => code,
        },
        Command::Check(a) => match a.on.trust.store() {
            Ok(trust) => check::run(
                &a.dir.unwrap_or(a.on.bootext.bootext),
                trust,
                a.on.json.json,
            ),
            Err(code) => code,
        },
        Command::Status(a) => status::run(&a.state, &a.bootext, a.json.json),
        Command::Images(a) => match a.on.trust.store() {
            Ok(trust) => images::run(&a.on.bootext.bootext, trust, a.on.json.json),
            Err(code) => code,
        },
        Command::SetActive(a) => trial::set_active(&trial::SetActive {
            bootext: &a.bootext.bootext,
            image: &a.image,
            tries: a.tries,
            trust_keys: &a.trust_keys,
            force: a.force,
            json: a.json.json,
        }),
        Command::Bless(a) => trial::bless(&a.bootext.bootext, &a.state, a.json.json),
        Command::Rollback(a) => trial::rollback(&a.bootext.bootext, a.json.json),
        Command::Mkinitramfs(a) => overboot::initramfs::execute(&overboot::initramfs::Options {
            output: a.output,
            kver: a.kver,
            modules_dir: a.modules_dir,
            compress: a.compress,
            add_shell: a.add_shell,
            binary: a.binary,
            modules: match a
                .modules
                .into_iter()
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
            {
                given if given.is_empty() => vec!["all".into()],
                given => given,
            },
            trust_keys: a.trust_key,
            net_ca: a.net_ca,
            allow_missing: a.allow_missing,
        }),
        Command::Inspect(a) => inspect::run(&a.file, a.json.json),
        Command::Seal(a) => overboot::verity::seal::execute(&a.image, a.sign.as_deref(), a.fec),
        Command::VerityWatch(a) => verity_watch::run(&a.state, &a.bootext.bootext),
        Command::Publish(a) => overboot::publish::execute(&a.images, &a.sign, &a.out),
        Command::Update(a) => update(a),
        Command::Mkuki(a) => mkuki(a),
        Command::Generate(what) => generate::run(&what),
    }
}

fn update(a: UpdateArgs) -> i32 {
    let opts = overboot::update::Options {
        url: a.url,
        image: a.image,
        tries: a.tries,
        keep: a.keep,
        bootext: a.bootext.bootext,
        trust_keys: match a.trust_keys {
            Some(dir) => vec![dir],
            None => [overboot::verify::RUN_TRUST_DIR, overboot::verify::TRUST_DIR]
                .map(PathBuf::from)
                .to_vec(),
        },
        ca: a.ca,
        timeout: std::time::Duration::from_secs(a.timeout.max(1)),
    };
    match overboot::update::run(&opts) {
        Ok(r) if a.json.json => print_json(&r),
        Ok(r) => {
            println!("overboot: {}", r.summary());
            0
        }
        Err(e) => fail(format!("update: {e}")),
    }
}

fn mkuki(a: MkukiArgs) -> i32 {
    if let Err(e) = overboot::uki::check_cmdline(&a.cmdline) {
        return fail(format!("mkuki: {e}"));
    }
    overboot::uki::execute(&overboot::uki::Options {
        output: a.output,
        kernel: a.kernel,
        initrd: a.initrd,
        cmdline: a.cmdline,
        os_release: a.os_release,
        stub: a.stub,
        sign: a.sign_key.zip(a.sign_cert),
    })
}

/// `--compress ALGO`, as `mkinitramfs` names them.
fn compression(name: &str) -> Result<overboot::initramfs::Compression, String> {
    overboot::initramfs::Compression::parse(name)
        .ok_or_else(|| "not a compression mkinitramfs knows".into())
}

/// clap's own output: help and version on stdout (exit 0); a usage error on stderr
/// in the one style of every error, `overboot: ...`, with exit code 2.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return 2;
    }
    let text = e.render().to_string();
    eprint!(
        "overboot: {}",
        text.strip_prefix("error: ").unwrap_or(&text)
    );
    2
}

/// A command's failure: one line on stderr, exit code 1.
fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("overboot: {msg}");
    1
}

/// Print a `--json` report: `{"version": 1, ...fields of value}`.
fn print_json(value: &impl serde::Serialize) -> i32 {
    #[derive(serde::Serialize)]
    struct Versioned<'a, T: serde::Serialize> {
        version: u32,
        #[serde(flatten)]
        report: &'a T,
    }
    match serde_json::to_string_pretty(&Versioned {
        version: 1,
        report: value,
    }) {
        Ok(j) => {
            println!("{j}");
            0
        }
        Err(e) => fail(format!("cannot write JSON: {e}")),
    }
}
