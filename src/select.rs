//! Choosing the system image: which links to try in which order, and the checks an
//! image passes before it is attached (link confined to BootExt, squashfs superblock
//! sound). The first candidate that passes, and mounts, boots; every failure is kept
//! as a reason.

use crate::cmdline::SystemChoice;
use crate::superblock::{self, Squashfs};
use crate::sys::confined::{Confined, Lookup};
use crate::sys::errno_text;
use rustix::fd::OwnedFd;
use rustix::io::Errno;

pub const ACTIVE_LINK: &str = "System/active-system";
pub const RECOVERY_LINK: &str = "System/recovery-system";
/// The image to return to after a trial (`overboot set-active`, see `crate::trial`).
pub const PREVIOUS_LINK: &str = "System/previous-system";

/// One image to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `active`, `recovery` or `named`.
    pub choice: &'static str,
    /// Path relative to BootExt: a link in `System/`, or a named image.
    pub path: String,
}

/// The order in which images are tried. Every request ends with the other well-known
/// image, so that one good image is enough to boot.
pub fn candidates(requested: &SystemChoice) -> Vec<Candidate> {
    let active = Candidate {
        choice: "active",
        path: ACTIVE_LINK.into(),
    };
    let recovery = Candidate {
        choice: "recovery",
        path: RECOVERY_LINK.into(),
    };
    match requested {
        SystemChoice::Active => vec![active, recovery],
        SystemChoice::Recovery => vec![recovery, active],
        SystemChoice::Named(name) => vec![
            Candidate {
                choice: "named",
                path: format!("System/{name}"),
            },
            recovery,
        ],
    }
}

/// The order when the active image is requested and `System/previous-system`
/// exists: it comes before recovery, and first when the trial logic says so (a trial
/// that ran out, or one that could not be counted); the active image stays last so
/// that one good image is enough to boot.
pub fn candidates_with_previous(requested: &SystemChoice, previous_first: bool) -> Vec<Candidate> {
    let mut list = candidates(requested);
    if *requested != SystemChoice::Active {
        return list;
    }
    let previous = Candidate {
        choice: "previous",
        path: PREVIOUS_LINK.into(),
    };
    if previous_first {
        list.rotate_left(1);
        list.insert(0, previous);
    } else {
        list.insert(1, previous);
    }
    list
}

/// An image that passed the checks, opened read-only.
pub struct CheckedImage {
    pub candidate: Candidate,
    /// The link followed, if the candidate was a link.
    pub link: Option<String>,
    /// The image file relative to BootExt.
    pub image: String,
    pub file: OwnedFd,
    pub superblock: Squashfs,
}

/// Why a link or path does not lead to a usable file, in operator words.
fn lookup_error(be: &Confined, path: &str, e: Lookup) -> String {
    let link = be.readlink(path).ok();
    let e = match e {
        Lookup::Errno(e) => e,
        kind => {
            let shown = link.map(|t| format!("{path} -> {t}"));
            return format!("{} {kind}", shown.as_deref().unwrap_or(path));
        }
    };
    match (e, link) {
        (Errno::NOENT, None) => format!("{path} does not exist"),
        (Errno::NOENT, Some(t)) => {
            format!("{path} -> {t} is dangling: the image it names does not exist")
        }
        (Errno::XDEV, Some(t)) if t.starts_with('/') => format!(
            "{path} -> {t} is an absolute link; links on BootExt must be relative (ln -sfn NAME.squashfs {path})"
        ),
        (Errno::XDEV, Some(t)) => format!("{path} -> {t} leads outside BootExt; it is refused"),
        (Errno::XDEV, None) => format!("{path} leads outside BootExt; it is refused"),
        (Errno::LOOP, _) => format!("{path}: too many levels of symlinks"),
        (e, _) => format!("{path}: {}", errno_text(e)),
    }
}

/// What a selection found: the chosen image (with what `accept` made of it), and
/// every attempt in order, failed ones with their reason.
pub struct Selection<T> {
    pub chosen: Option<(Candidate, CheckedImage, T)>,
    pub attempts: Vec<crate::state::Attempt>,
}

/// The boot's selection (steps 4 to 6): the first candidate that passes [`check`]
/// and that `accept` takes (at boot: verification, then the mount; in a preview:
/// verification, then reading its tree). The boot and the preview both call this,
/// so they choose alike.
pub fn first_usable<T>(
    be: &Confined,
    candidates: Vec<Candidate>,
    mut accept: impl FnMut(&CheckedImage) -> Result<T, String>,
) -> Selection<T> {
    let mut attempts = Vec::new();
    for candidate in candidates {
        match check(be, &candidate).and_then(|img| Ok((accept(&img)?, img))) {
            Ok((made, img)) => {
                attempts.push(crate::state::Attempt {
                    choice: candidate.choice.into(),
                    link: img.link.clone(),
                    image: Some(img.image.clone()),
                    ok: true,
                    reason: None,
                });
                return Selection {
                    chosen: Some((candidate, img, made)),
                    attempts,
                };
            }
            Err(reason) => attempts.push(crate::state::Attempt {
                choice: candidate.choice.into(),
                link: Some(candidate.path.clone()),
                image: None,
                ok: false,
                reason: Some(reason),
            }),
        }
    }
    Selection {
        chosen: None,
        attempts,
    }
}

/// The fallback a selection made: from the first candidate that failed, if any.
pub fn fallback(attempts: &[crate::state::Attempt]) -> Option<crate::state::Fallback> {
    let first = attempts.iter().find(|a| !a.ok)?;
    Some(crate::state::Fallback {
        from: first.choice.clone(),
        reason: first.reason.clone().unwrap_or_default(),
    })
}

/// Check one candidate: the link resolves inside BootExt to a regular file whose
/// squashfs superblock is sound.
pub fn check(be: &Confined, candidate: &Candidate) -> Result<CheckedImage, String> {
    let link = be.readlink(&candidate.path).ok();
    let file = be
        .open_file(&candidate.path)
        .map_err(|e| lookup_error(be, &candidate.path, e))?;
    let image = be
        .relative_of(&file)
        .unwrap_or_else(|| candidate.path.clone());
    let shown = if link.is_some() {
        format!("{} -> {image}", candidate.path)
    } else {
        image.clone()
    };
    let st = rustix::fs::fstat(&file).map_err(|e| format!("{shown}: {}", errno_text(e)))?;
    let superblock =
        read_superblock(&file, st.st_size as u64).map_err(|e| format!("{shown}: {e}"))?;
    Ok(CheckedImage {
        candidate: candidate.clone(),
        link: link.map(|_| candidate.path.clone()),
        image,
        file,
        superblock,
    })
}

/// Read the head of an open image and check its superblock.
pub fn read_superblock(file: &OwnedFd, size: u64) -> Result<Squashfs, String> {
    let mut head = vec![0u8; superblock::PROBE_LEN];
    let mut filled = 0;
    while filled < head.len() {
        match rustix::io::pread(file, &mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(format!("cannot read: {}", errno_text(e))),
        }
    }
    head.truncate(filled);
    superblock::check_squashfs(&head, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_order() {
        let order = |c: SystemChoice| {
            candidates(&c)
                .into_iter()
                .map(|c| c.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(order(SystemChoice::Active), [ACTIVE_LINK, RECOVERY_LINK]);
        assert_eq!(order(SystemChoice::Recovery), [RECOVERY_LINK, ACTIVE_LINK]);
        assert_eq!(
            order(SystemChoice::Named("v2.squashfs".into())),
            ["System/v2.squashfs", RECOVERY_LINK]
        );
        let with = |first: bool| {
            candidates_with_previous(&SystemChoice::Active, first)
                .into_iter()
                .map(|c| c.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(with(false), [ACTIVE_LINK, PREVIOUS_LINK, RECOVERY_LINK]);
        assert_eq!(with(true), [PREVIOUS_LINK, RECOVERY_LINK, ACTIVE_LINK]);
    }
}
