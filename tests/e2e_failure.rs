//! End-to-end failure policy (DESIGN section 2, last paragraph): with no BootExt, the
//! boxed message, then the emergency shell on the console when the initramfs has one
//! (typed into through the serial console), and the visible reboot countdown. QEMU runs
//! with -no-reboot, so a reboot ends it with status 0.

mod e2e_common;

use e2e_common::{Boot, boot_with, fixture, initramfs_with};

/// The policy ended in a reboot (QEMU's -no-reboot ends it), never a kernel panic.
fn assert_rebooted_without_a_panic(log: &Boot) {
    log.assert_has("rebooting now");
    log.assert_lacks("Kernel panic");
    assert!(
        log.powered_off(),
        "QEMU did not end by reboot:\n{}",
        log.tail()
    );
}

const NO_BOOTEXT: &str = "overboot.bootext=LABEL=Missing overboot.timeout=2";

#[test]
fn emergency_shell_takes_commands_then_the_machine_reboots() {
    let f = fixture();
    let initrd = initramfs_with(f, "shell", &["--add-shell"]);
    // No onfail=: the default is the shell because the initramfs has one. The typed
    // line computes its marker so that the echo of the input cannot match it.
    let log = boot_with(
        f,
        &initrd,
        NO_BOOTEXT,
        &[],
        &[
            "--type-after".into(),
            "(overboot emergency)".into(),
            "--type".into(),
            "echo SHELL-ANSWER-$((6*7)); test -c /dev/console && echo CONSOLE-$((1+1)); exit 3"
                .into(),
        ],
    );
    log.assert_has("LABEL=Missing");
    log.assert_has("starting an emergency shell");
    log.assert_has("SHELL-ANSWER-42");
    log.assert_has("CONSOLE-2");
    log.assert_has("the emergency shell ended");
    assert_rebooted_without_a_panic(&log);
}

#[test]
fn reboot_policy_counts_down_visibly_then_reboots() {
    let f = fixture();
    let log = boot_with(
        f,
        &f.initrd,
        &format!("{NO_BOOTEXT} overboot.onfail=reboot"),
        &[],
        &[],
    );
    log.assert_has("LABEL=Missing");
    log.assert_has("the machine reboots");
    // The countdown is one console line rewritten in place: every second shows.
    for left in [30, 29, 15, 2, 1] {
        log.assert_has(&format!("rebooting in {left:2} s"));
    }
    assert_rebooted_without_a_panic(&log);
}
