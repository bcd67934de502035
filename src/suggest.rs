//! "Did you mean": the known word closest to a misspelt one, for messages about
//! manifest keys, `[[mount]]` kinds and `overboot.*` parameters. Pure.

/// Words longer than this are not compared (a bound on the work per word).
const MAX_LEN: usize = 64;

/// The word of `known` nearest to `word` (edit distance), when near enough to be
/// a likely slip: at most a third of the known word's length, rounded up.
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    if word.len() > MAX_LEN {
        return None;
    }
    known
        .iter()
        .filter_map(|k| {
            let near = k.len().div_ceil(3);
            // The distance is at least the difference in length: most words are
            // ruled out without computing it.
            if word.len().abs_diff(k.len()) > near {
                return None;
            }
            let d = distance(word.as_bytes(), k.as_bytes());
            (d <= near).then_some((d, *k))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ` (did you mean 'WORD'?)` after a message, or nothing.
pub fn did_you_mean(word: &str, known: &[&str]) -> String {
    closest(word, known)
        .map(|k| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

/// Levenshtein distance, two rows.
fn distance(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let swap = prev[j] + usize::from(ca != cb);
            row[j + 1] = swap.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slips_are_caught_and_strangers_are_not() {
        let kinds = ["bind", "image", "tmpfs"];
        assert_eq!(closest("bindd", &kinds), Some("bind"));
        assert_eq!(closest("imgae", &kinds), Some("image"));
        assert_eq!(closest("tmpf", &kinds), Some("tmpfs"));
        assert_eq!(closest("overlayfs", &kinds), None);
        assert_eq!(
            closest("read_onyl", &["read_only", "source"]),
            Some("read_only")
        );
        assert_eq!(closest(&"x".repeat(1000), &kinds), None);
        assert_eq!(
            did_you_mean("veriy", &["verify", "verity"]),
            " (did you mean 'verify'?)"
        );
        assert_eq!(did_you_mean("zzz", &["verify"]), "");
    }
}
