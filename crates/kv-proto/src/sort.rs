//! `SORT` and `SORT_RO`: their options and their ordering, shared by kvservers (which sort
//! what they hold) and gates (which sort by `BY` and `GET` patterns naming keys on any
//! shard). Both must order alike, so the rules live once, here, after Redis's `sort.c`
//! (read, not copied): numbers compared as doubles with ties broken by the elements' bytes,
//! `ALPHA` by bytes, a missing `BY` value first, `DESC` reversing all of it.

use std::cmp::Ordering;

use bytes::Bytes;

/// What a `SORT` asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SortSpec {
    /// `BY pattern`, when given (a pattern without `*` means "do not sort").
    pub by: Option<Bytes>,
    /// `LIMIT offset count`: `(0, -1)` when absent.
    pub limit: (i64, i64),
    /// `GET pattern`s, in order (`#` is the element itself).
    pub gets: Vec<Bytes>,
    pub desc: bool,
    pub alpha: bool,
    /// `STORE destination` (the last one given).
    pub store: Option<Bytes>,
}

pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_DOUBLE: &str = "ERR One or more scores can't be converted into double";

impl SortSpec {
    /// Parses `args` (`args[0]` the name, `args[1]` the key). `SORT_RO` (`read_only`)
    /// takes no `STORE`.
    pub fn parse(args: &[Bytes], read_only: bool) -> Result<SortSpec, &'static str> {
        let mut s = SortSpec {
            limit: (0, -1),
            ..SortSpec::default()
        };
        let mut j = 2;
        while j < args.len() {
            let left = args.len() - j - 1;
            let a = &args[j];
            if a.eq_ignore_ascii_case(b"ASC") {
                s.desc = false;
            } else if a.eq_ignore_ascii_case(b"DESC") {
                s.desc = true;
            } else if a.eq_ignore_ascii_case(b"ALPHA") {
                s.alpha = true;
            } else if a.eq_ignore_ascii_case(b"LIMIT") && left >= 2 {
                let n = |b: &Bytes| {
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|t| t.parse::<i64>().ok())
                        .ok_or(NOT_INTEGER)
                };
                s.limit = (n(&args[j + 1])?, n(&args[j + 2])?);
                j += 2;
            } else if !read_only && a.eq_ignore_ascii_case(b"STORE") && left >= 1 {
                s.store = Some(args[j + 1].clone());
                j += 1;
            } else if a.eq_ignore_ascii_case(b"BY") && left >= 1 {
                s.by = Some(args[j + 1].clone());
                j += 1;
            } else if a.eq_ignore_ascii_case(b"GET") && left >= 1 {
                s.gets.push(args[j + 1].clone());
                j += 1;
            } else {
                return Err(SYNTAX);
            }
            j += 1;
        }
        Ok(s)
    }

    /// True when `BY` names a constant: the elements keep their native order.
    pub fn dont_sort(&self) -> bool {
        self.by.as_ref().is_some_and(|p| !p.contains(&b'*'))
    }

    /// The `BY` pattern, when it names a key per element.
    pub fn by_pattern(&self) -> Option<&Bytes> {
        self.by.as_ref().filter(|p| p.contains(&b'*'))
    }

    /// True when the elements (or their `GET`s) come from keys named by patterns.
    pub fn uses_patterns(&self) -> bool {
        self.by_pattern().is_some() || !self.gets.is_empty()
    }

    /// The positions `LIMIT` keeps of `len` sorted elements.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        let len_i = len as i64;
        let start = self.limit.0.clamp(0, len_i);
        let count = self.limit.1.clamp(-1, len_i);
        if start >= len_i {
            return 0..0;
        }
        let end = if count < 0 { len_i } else { (start + count).min(len_i) };
        start as usize..end.max(start) as usize
    }
}

/// The key a pattern names for `element` and, for `key->field`, the hash field; `None` when
/// the pattern has no `*` (it names nothing). A `->` with no field after it is part of the
/// key name, as in Redis.
pub fn pattern_key<'p>(pattern: &'p [u8], element: &[u8]) -> Option<(Vec<u8>, Option<&'p [u8]>)> {
    let star = pattern.iter().position(|&b| b == b'*')?;
    let after = &pattern[star + 1..];
    let arrow = after
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&i| i + 2 < after.len());
    let (postfix, field) = match arrow {
        Some(i) => (&after[..i], Some(&after[i + 2..])),
        None => (after, None),
    };
    let mut key = Vec::with_capacity(star + element.len() + postfix.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(postfix);
    Some((key, field))
}

/// A value read as a sort score, as `strtod` reads it for `SORT`: the whole text must be a
/// number (leading spaces allowed), not NaN and not out of a double's range.
pub fn score(b: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(b).ok()?.trim_start();
    if t.is_empty() {
        // strtod reads nothing and stops at the end: a score of 0.
        return Some(0.0);
    }
    let lower = t.to_ascii_lowercase();
    let v: f64 = match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        _ if lower.contains("inf") || lower.contains("nan") => return None,
        _ => lower.parse().ok()?,
    };
    // Out of range (strtod's ERANGE): a finite text that overflowed.
    if v.is_nan() || (v.is_infinite() && !lower.contains("inf")) {
        return None;
    }
    Some(v)
}

/// One element being sorted: itself, and what it sorts by.
#[derive(Debug, Clone)]
pub struct Item {
    pub element: Bytes,
    /// The numeric weight (0 when its `BY` key is missing).
    pub score: f64,
    /// The `ALPHA` weight from a `BY` key (`None`: missing).
    pub text: Option<Bytes>,
}

impl Item {
    pub fn new(element: Bytes) -> Item {
        Item {
            element,
            score: 0.0,
            text: None,
        }
    }
}

/// Gives each item its weight: `weight(i)` is the value its `BY` key holds (`None`:
/// missing), or the element itself without a `BY` pattern. `Err` when sorting numerically
/// and a weight is not a number.
pub fn weigh(
    items: &mut [Item],
    alpha: bool,
    by_pattern: bool,
    mut weight: impl FnMut(usize, &Item) -> Option<Bytes>,
) -> Result<(), &'static str> {
    let mut bad = false;
    for (i, item) in items.iter_mut().enumerate() {
        let w = if by_pattern {
            weight(i, item)
        } else {
            Some(item.element.clone())
        };
        let Some(w) = w else { continue };
        if alpha {
            if by_pattern {
                item.text = Some(w);
            }
        } else {
            match score(&w) {
                Some(s) => item.score = s,
                None => bad = true,
            }
        }
    }
    if bad { Err(NOT_DOUBLE) } else { Ok(()) }
}

/// Sorts weighed items as Redis does.
pub fn order(items: &mut [Item], alpha: bool, by_pattern: bool, desc: bool) {
    items.sort_by(|a, b| {
        let cmp = if !alpha {
            a.score
                .partial_cmp(&b.score)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.element.cmp(&b.element))
        } else if by_pattern {
            // A missing weight sorts first.
            a.text.cmp(&b.text)
        } else {
            a.element.cmp(&b.element)
        };
        if desc { cmp.reverse() } else { cmp }
    });
}

/// The keys of a `SORT` for `COMMAND GETKEYS` and slot checks: the sorted key, and the
/// destination of the last `STORE` (options and their arguments skipped, as Redis does).
pub fn store_key(args: &[Bytes]) -> Option<&Bytes> {
    let mut found = None;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if a.eq_ignore_ascii_case(b"LIMIT") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"GET") || a.eq_ignore_ascii_case(b"BY") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"STORE") && i + 1 < args.len() {
            found = Some(&args[i + 1]);
            i += 1;
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|w| Bytes::from(w.to_string())).collect()
    }

    #[test]
    fn options_parse_as_redis_reads_them() {
        let s = SortSpec::parse(
            &args("SORT k BY w_* LIMIT 5 5 GET # GET h_*->f DESC ALPHA STORE d"),
            false,
        )
        .unwrap();
        assert_eq!(s.by.as_deref(), Some(&b"w_*"[..]));
        assert_eq!(s.limit, (5, 5));
        assert_eq!(s.gets.len(), 2);
        assert!(s.desc && s.alpha && s.uses_patterns() && !s.dont_sort());
        assert_eq!(s.store.as_deref(), Some(&b"d"[..]));
        assert_eq!(SortSpec::parse(&args("SORT_RO k STORE d"), true), Err(SYNTAX));
        assert_eq!(SortSpec::parse(&args("SORT k LIMIT 1"), false), Err(SYNTAX));
        assert_eq!(SortSpec::parse(&args("SORT k LIMIT x 1"), false), Err(NOT_INTEGER));
        assert!(SortSpec::parse(&args("SORT k BY nosort"), false).unwrap().dont_sort());
    }

    #[test]
    fn limit_clamps_as_redis_does() {
        let with = |o, c| SortSpec {
            limit: (o, c),
            ..SortSpec::default()
        };
        assert_eq!(with(0, -1).range(5), 0..5);
        assert_eq!(with(-10, 100).range(5), 0..5);
        assert_eq!(with(5, 10).range(5), 0..0);
        assert_eq!(with(1, 2).range(5), 1..3);
        assert_eq!(with(2, i64::MAX).range(3), 2..3);
        assert_eq!(with(1, 0).range(3), 1..1);
        assert_eq!(with(0, 1).range(0), 0..0);
    }

    #[test]
    fn patterns_name_keys_and_fields() {
        assert_eq!(pattern_key(b"w_*", b"3"), Some((b"w_3".to_vec(), None)));
        assert_eq!(pattern_key(b"o_*->f", b"3"), Some((b"o_3".to_vec(), Some(&b"f"[..]))));
        // A trailing `->` is part of the key's name.
        assert_eq!(pattern_key(b"x:*->", b"a"), Some((b"x:a->".to_vec(), None)));
        assert_eq!(pattern_key(b"nosort", b"a"), None);
    }

    #[test]
    fn scores_read_as_strtod_reads_them() {
        assert_eq!(score(b"1.5"), Some(1.5));
        assert_eq!(score(b" 7"), Some(7.0));
        assert_eq!(score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(score(b""), Some(0.0));
        assert_eq!(score(b"not-a-double"), None);
        assert_eq!(score(b"nan"), None);
        assert_eq!(score(b"1e400"), None);
        assert_eq!(score(b"1 "), None);
    }

    #[test]
    fn order_breaks_ties_by_bytes_and_puts_missing_first() {
        let mut items: Vec<Item> = ["b", "a", "10", "2"]
            .iter()
            .map(|e| Item::new(Bytes::from(*e)))
            .collect();
        weigh(&mut items, false, true, |_, it| {
            (it.element.as_ref() != b"10").then(|| Bytes::from("1"))
        })
        .unwrap();
        order(&mut items, false, true, false);
        let got: Vec<&[u8]> = items.iter().map(|i| &i.element[..]).collect();
        assert_eq!(got, [&b"10"[..], b"2", b"a", b"b"]);
        order(&mut items, true, false, false);
        let got: Vec<&[u8]> = items.iter().map(|i| &i.element[..]).collect();
        assert_eq!(got, [&b"10"[..], b"2", b"a", b"b"]);
        let mut bad = vec![Item::new(Bytes::from("x"))];
        assert_eq!(weigh(&mut bad, false, false, |_, _| None), Err(NOT_DOUBLE));
    }
}
