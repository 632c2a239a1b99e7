//! Redis's glob patterns (`KEYS`, `SCAN … MATCH`): `*` any run, `?` any byte, `[abc]`,
//! `[^abc]` and `[a-z]` classes, `\x` a literal `x`.
//!
//! Hand-written because no crate matches bytes with Redis's exact rules (the `glob` crate
//! matches paths). Single backtracking point: `*` is the only element of variable width,
//! so remembering the last `*` and retrying one byte further is complete and takes
//! O(pattern × subject) time, never exponential.

/// True when `subject` matches `pattern`.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, subject index).
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                star = Some((p, s));
                continue;
            }
            if let Some(width) = one(&pattern[p..], subject[s]) {
                p += width;
                s += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                p = sp;
                s = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches the one-byte element at the start of `pattern` against `c`: its width in the
/// pattern when it matches.
fn one(pattern: &[u8], c: u8) -> Option<usize> {
    match pattern[0] {
        b'?' => Some(1),
        b'\\' if pattern.len() >= 2 => (pattern[1] == c).then_some(2),
        b'[' => class(pattern, c),
        lit => (lit == c).then_some(1),
    }
}

/// A `[...]` class at the start of `pattern`. Like Redis, a class missing its `]` runs to
/// the end of the pattern.
fn class(pattern: &[u8], c: u8) -> Option<usize> {
    let mut i = 1;
    let negate = pattern.get(1) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            hit |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (a, b) = (pattern[i].min(pattern[i + 2]), pattern[i].max(pattern[i + 2]));
            hit |= (a..=b).contains(&c);
            i += 3;
        } else {
            hit |= pattern[i] == c;
            i += 1;
        }
    }
    // Past the closing `]` (or at the end when it is missing).
    let width = (i + 1).min(pattern.len());
    (hit != negate).then_some(width)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_examples() {
        for (p, s, want) in [
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "hllo", true),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("foo\\*", "foo*", true),
            ("foo\\*", "foox", false),
            ("[\\]]", "]", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("key:*", "key:1", true),
            ("*:1", "key:1", true),
        ] {
            assert_eq!(matches(p.as_bytes(), s.as_bytes()), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn many_stars_stay_linear_per_star() {
        let pattern = "a*".repeat(50) + "b";
        let subject = "a".repeat(5000);
        assert!(!matches(pattern.as_bytes(), subject.as_bytes()));
    }
}
