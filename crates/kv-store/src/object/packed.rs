//! The packed encoding of a collection: its items one after another, each a LEB128 length
//! and the bytes. It is how small collections are held in memory (inside the key's own
//! allocation, as Redis holds them in a listpack) and how every collection travels between
//! servers (snapshots, key moves, `KV.FETCH`). Hand-written: it is a dozen lines, and no
//! crate offers a format this small that is also our wire format.

/// Appends `item`.
pub fn push(out: &mut Vec<u8>, item: &[u8]) {
    let mut n = item.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(item);
}

/// The bytes `item` takes when pushed.
pub fn cost(item: &[u8]) -> usize {
    let mut n = item.len() >> 7;
    let mut c = 1;
    while n != 0 {
        n >>= 7;
        c += 1;
    }
    c + item.len()
}

/// The items of `buf`, in order; `None` for a malformed buffer (from a peer).
pub fn items(buf: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut it = Items { buf };
    while !it.buf.is_empty() {
        out.push(it.next()?);
    }
    Some(out)
}

/// Iterates items; ends at the end of the buffer or at the first malformed item.
pub struct Items<'a> {
    pub buf: &'a [u8],
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let mut n: usize = 0;
        let mut shift = 0;
        let mut i = 0;
        loop {
            let b = *self.buf.get(i)?;
            i += 1;
            n |= ((b & 0x7f) as usize).checked_shl(shift)?;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 35 {
                return None;
            }
        }
        let item = self.buf.get(i..i.checked_add(n)?)?;
        self.buf = &self.buf[i + n..];
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_input() {
        let big = vec![7u8; 300];
        let mut buf = Vec::new();
        for item in [&b""[..], b"a", &big] {
            push(&mut buf, item);
        }
        assert_eq!(buf.len(), cost(b"") + cost(b"a") + cost(&big));
        assert_eq!(items(&buf).unwrap(), vec![&b""[..], b"a", &big[..]]);
        assert!(items(&buf[..buf.len() - 1]).is_none(), "a truncated item");
        assert!(
            items(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_none(),
            "an endless length"
        );
    }
}
