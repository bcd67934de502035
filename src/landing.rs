//! Where a mount lands, checked right before it is made. Pure.
//!
//! The plan decodes and checks targets once, against the tree as it was; each mount
//! then resolves its target again, after earlier mounts changed the tree (a `DIRS/`
//! bind may bring symlinks: `DIR_opt/x -> /mnt/cdrom`). So the place actually
//! reached is checked here, once resolved and before anything is attached: a place
//! overboot mounts itself, or one another entry already took, is a skip with its
//! reason, never a mount. `plan::build` refuses reserved targets with the same check.

use crate::names::TargetPath;

/// The places mounts have taken so far in this boot, sorted (thousands of entries
/// are checked by binary search, a few comparisons each), and those reserved.
pub struct Landing {
    reserved: Vec<TargetPath>,
    taken: Vec<(TargetPath, String)>,
}

impl Landing {
    pub fn new(reserved: Vec<TargetPath>) -> Landing {
        Landing {
            reserved,
            taken: Vec::new(),
        }
    }

    fn find(&self, place: &TargetPath) -> Result<usize, usize> {
        self.taken.binary_search_by(|(p, _)| p.cmp(place))
    }

    /// May a mount for `target` land on `real` (where resolving it led)?
    pub fn check(&self, target: &TargetPath, real: &TargetPath) -> Result<(), String> {
        check_reserved(target, real, &self.reserved)?;
        let via = via(target, real);
        match self.find(real).map(|i| &self.taken[i].1) {
            Ok(origin) => Err(format!(
                "target {target}{via} is where {origin} is already mounted; one place, one mount"
            )),
            Err(_) => Ok(()),
        }
    }

    /// Record that `origin` is now mounted on `real`.
    pub fn take(&mut self, real: TargetPath, origin: &str) {
        // Entries come parents first, so this is nearly always at the end.
        if let Err(i) = self.find(&real) {
            self.taken.insert(i, (real, origin.to_string()));
        }
    }
}

/// ` (a symlink leads to /x)` when the target did not resolve to itself.
fn via(target: &TargetPath, real: &TargetPath) -> String {
    if target == real {
        String::new()
    } else {
        format!(" (a symlink leads to {real})")
    }
}

/// `real` may not hold, or lie in, a place overboot mounts itself.
pub fn check_reserved(
    target: &TargetPath,
    real: &TargetPath,
    reserved: &[TargetPath],
) -> Result<(), String> {
    match reserved
        .iter()
        .find(|r| r.starts_with(real) || real.starts_with(r))
    {
        Some(r) => Err(format!(
            "target {target}{} overlaps {r}, which overboot itself mounts",
            via(target, real)
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetPath {
        TargetPath::parse_absolute(s).unwrap()
    }

    #[test]
    fn reserved_and_taken_places_are_refused_where_they_are_reached() {
        let mut l = Landing::new(vec![p("/mnt/cdrom"), p("/mnt/overlay")]);
        assert!(l.check(&p("/etc/ssh"), &p("/etc/ssh")).is_ok());
        l.take(p("/etc/ssh"), "DIRS/DIR_etc_ssh");
        let twice = l.check(&p("/opt/w"), &p("/etc/ssh")).unwrap_err();
        assert_eq!(
            twice,
            "target /opt/w (a symlink leads to /etc/ssh) is where DIRS/DIR_etc_ssh is already mounted; one place, one mount"
        );
        let cdrom = l.check(&p("/opt/x"), &p("/mnt/cdrom")).unwrap_err();
        assert!(cdrom.contains("overlaps /mnt/cdrom"), "{cdrom}");
        let upper = l.check(&p("/opt/z"), &p("/mnt/overlay/upper")).unwrap_err();
        assert!(upper.contains("overlaps /mnt/overlay"), "{upper}");
        let parent = l.check(&p("/opt/m"), &p("/mnt")).unwrap_err();
        assert!(parent.contains("overlaps /mnt/cdrom"), "{parent}");
        assert!(
            l.check(&p("/etc/ssh/x"), &p("/etc/ssh/x")).is_ok(),
            "below a mount is fine"
        );
    }
}
