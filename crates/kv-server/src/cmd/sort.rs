//! `SORT` and `SORT_RO` of a list, set or sorted set, with `LIMIT`, `ASC`/`DESC`, `ALPHA`,
//! `BY <constant>` (native order) and `STORE`. A `BY` or `GET` pattern names keys that may
//! live in any slot, so a kvserver refuses them as Redis Cluster does; a gate serves them
//! (it reads those keys wherever they live). `STORE` replicates as the whole list (`OBJ`).

use bytes::Bytes;
use kv_proto::sort::{self as rules, Item, SortSpec};
use kv_proto::{Frame, Kind, Out};
use kv_store::Object;
use kv_store::object::ListObj;

use super::family::{Entry, error, frame_reply};
use crate::node::{Node, Pending};

pub const COMMANDS: &[Entry] = &[("sort", sort, false), ("sort_ro", sort, true)];

fn sort(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let read_only = a[0].eq_ignore_ascii_case(b"SORT_RO");
    let spec = match SortSpec::parse(a, read_only) {
        Ok(s) => s,
        Err(e) => return error(out, e),
    };
    if spec.by_pattern().is_some() {
        return error(out, "ERR BY option of SORT denied in Cluster mode.");
    }
    // `GET #` (the element itself) names no key: served.
    if spec.gets.iter().any(|g| &g[..] != b"#") {
        return error(out, "ERR GET option of SORT denied in Cluster mode.");
    }
    let copies = spec.gets.len().max(1);
    let key = &a[1];
    let Some(dst) = spec.store.clone() else {
        let result = node.read([&key[..]], |r| {
            let kind = sortable(r.kind_of(key).map(|(k, _)| k));
            match r.object(key, kind, |o| sorted(o, &spec, false)) {
                Ok(items) => Frame::Array(repeat(items, copies).map(Frame::Bulk).collect()),
                Err(e) => Frame::error(e),
            }
        });
        return frame_reply(out, result);
    };
    let result = node.write([&key[..], &dst[..]], |w| {
        let kind = sortable(w.kind_of(key).map(|(k, _)| k));
        let items = w.read_obj(key, kind, |o| sorted(o, &spec, true));
        if w.failed() {
            return Frame::Null;
        }
        let items = match items {
            Ok(items) => items,
            Err(e) => return Frame::error(e),
        };
        let items: Vec<Bytes> = repeat(items, copies).collect();
        let n = items.len();
        let mut list = ListObj::default();
        items.iter().for_each(|i| list.push_back(i));
        // An empty result deletes the destination, as in Redis.
        w.set_object(&dst, Object::List(list), None);
        Frame::Integer(n as i64)
    });
    frame_reply(out, result)
}

/// Each element `copies` times (one per `GET #`).
fn repeat(items: Vec<Bytes>, copies: usize) -> impl Iterator<Item = Bytes> {
    items.into_iter().flat_map(move |i| std::iter::repeat_n(i, copies))
}

/// The kind to read the key as: its own when sortable; otherwise a kind it is not, so the
/// read fails with `WRONGTYPE` (a missing key reads as an empty list).
fn sortable(kind: Option<Kind>) -> Kind {
    match kind {
        Some(k @ (Kind::List | Kind::Set | Kind::ZSet)) => k,
        Some(Kind::String) => Kind::List,
        _ => Kind::String,
    }
}

/// The elements `spec` selects from `obj`, in order. `store`: the result is stored, so a
/// set's arbitrary order is sorted (`ALPHA`) even under `BY <constant>`, as Redis does to
/// keep replicas alike.
pub fn sorted(obj: Option<&Object>, spec: &SortSpec, store: bool) -> Result<Vec<Bytes>, &'static str> {
    let Some(obj) = obj else { return Ok(vec![]) };
    let mut dont_sort = spec.dont_sort();
    let mut alpha = spec.alpha;
    if dont_sort && (store || super::scripting::in_script()) && matches!(obj, Object::Set(_)) {
        dont_sort = false;
        alpha = true;
    }
    let elements: Vec<Bytes> = match obj {
        Object::List(l) => l.iter().map(Bytes::copy_from_slice).collect(),
        Object::Set(s) => s.iter().map(Bytes::copy_from_slice).collect(),
        // Unsorted, a sorted set keeps its order, reversed by DESC.
        Object::ZSet(z) if dont_sort && spec.desc => z.iter().rev().map(|(m, _)| Bytes::copy_from_slice(m)).collect(),
        Object::ZSet(z) => z.iter().map(|(m, _)| Bytes::copy_from_slice(m)).collect(),
        Object::Hash(_) => return Err(kv_proto::kind::WRONGTYPE),
    };
    if dont_sort {
        let range = spec.range(elements.len());
        return Ok(elements[range].to_vec());
    }
    let mut items: Vec<Item> = elements.into_iter().map(Item::new).collect();
    rules::weigh(&mut items, alpha, false, |_, _| None)?;
    rules::order(&mut items, alpha, false, spec.desc);
    let range = spec.range(items.len());
    Ok(items.drain(range).map(|i| i.element).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> SortSpec {
        let args: Vec<Bytes> = s.split(' ').map(|w| Bytes::from(w.to_string())).collect();
        SortSpec::parse(&args, false).unwrap()
    }

    fn strs(v: Vec<Bytes>) -> Vec<String> {
        v.into_iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect()
    }

    #[test]
    fn sorts_numbers_text_and_native_orders() {
        let mut l = ListObj::default();
        for v in ["2", "1", "3", "10"] {
            l.push_back(v.as_bytes());
        }
        let list = Object::List(l);
        assert_eq!(
            strs(sorted(Some(&list), &spec("SORT k"), false).unwrap()),
            ["1", "2", "3", "10"]
        );
        assert_eq!(
            strs(sorted(Some(&list), &spec("SORT k ALPHA"), false).unwrap()),
            ["1", "10", "2", "3"]
        );
        assert_eq!(
            strs(sorted(Some(&list), &spec("SORT k DESC LIMIT 1 2"), false).unwrap()),
            ["3", "2"]
        );
        assert_eq!(
            strs(sorted(Some(&list), &spec("SORT k BY nosort"), false).unwrap()),
            ["2", "1", "3", "10"]
        );
        let mut z = kv_store::object::ZSetObj::default();
        for (m, s) in [("a", 1.0), ("b", 5.0), ("c", 2.0), ("d", 10.0), ("e", 3.0)] {
            z.insert(m.as_bytes(), s);
        }
        let z = Object::ZSet(z);
        assert_eq!(
            strs(sorted(Some(&z), &spec("SORT z BY nosort DESC LIMIT 0 2"), false).unwrap()),
            ["d", "b"]
        );
        assert_eq!(
            strs(sorted(Some(&z), &spec("SORT z ALPHA DESC"), false).unwrap()),
            ["e", "d", "c", "b", "a"]
        );
        let mut bad = ListObj::default();
        bad.push_back(b"x");
        assert_eq!(
            sorted(Some(&Object::List(bad)), &spec("SORT k"), false),
            Err(rules::NOT_DOUBLE)
        );
    }
}
