//! Lua's `struct` library as Redis ships it: `struct.pack(fmt, ...)`, `struct.unpack(fmt,
//! s [, i])` and `struct.size(fmt)`, converting between Lua values and C-like binary
//! records. Written after the library's documented format (read, not copied):
//!
//! `>` big-endian, `<` little-endian, `=` native (little), `![n]` align items to at most
//! `n` bytes; `x` a zero byte; `b`/`B` signed/unsigned char; `h`/`H` short; `l`/`L` long
//! (8 bytes); `T` size_t (8); `i[n]`/`I[n]` an integer of `n` bytes (4 by default); `f`
//! float; `d` double; `s` a zero-terminated string; `c[n]` `n` bytes (`c0`: the length is
//! the preceding value); spaces are ignored.

use mlua::{Lua, MultiValue, Table, Value};

fn err(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(msg.into())
}

/// One item of a format.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Item {
    Pad,
    Int {
        size: usize,
        signed: bool,
    },
    Float,
    Double,
    /// Zero-terminated.
    Str,
    /// Fixed length (0: the length is the preceding value).
    Chars(usize),
}

impl Item {
    fn size(self) -> usize {
        match self {
            Item::Pad => 1,
            Item::Int { size, .. } => size,
            Item::Float => 4,
            Item::Double => 8,
            Item::Str | Item::Chars(_) => 0,
        }
    }
}

/// A format, read item by item with its endianness and alignment.
struct Format<'a> {
    fmt: &'a [u8],
    at: usize,
    little: bool,
    align: usize,
}

impl<'a> Format<'a> {
    fn new(fmt: &'a [u8]) -> Self {
        Format {
            fmt,
            at: 0,
            little: true,
            align: 1,
        }
    }

    fn number(&mut self, default: usize) -> mlua::Result<usize> {
        let start = self.at;
        while self.at < self.fmt.len() && self.fmt[self.at].is_ascii_digit() {
            self.at += 1;
        }
        if start == self.at {
            return Ok(default);
        }
        std::str::from_utf8(&self.fmt[start..self.at])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err("invalid format size"))
    }

    /// The next item, after the options before it.
    fn next(&mut self) -> mlua::Result<Option<Item>> {
        while let Some(&c) = self.fmt.get(self.at) {
            self.at += 1;
            let int = |size, signed| Ok(Some(Item::Int { size, signed }));
            return match c {
                b' ' => continue,
                b'>' => {
                    self.little = false;
                    continue;
                }
                b'<' | b'=' => {
                    self.little = true;
                    continue;
                }
                b'!' => {
                    self.align = self.number(8)?;
                    if !self.align.is_power_of_two() {
                        return Err(err("alignment must be power of 2"));
                    }
                    continue;
                }
                b'x' => Ok(Some(Item::Pad)),
                b'b' => int(1, true),
                b'B' => int(1, false),
                b'h' => int(2, true),
                b'H' => int(2, false),
                b'l' => int(8, true),
                b'L' | b'T' => int(8, false),
                b'i' | b'I' => {
                    let size = self.number(4)?;
                    if !(1..=8).contains(&size) {
                        return Err(err(format!("integral size {size} is larger than limit of 8")));
                    }
                    int(size, c == b'i')
                }
                b'f' => Ok(Some(Item::Float)),
                b'd' => Ok(Some(Item::Double)),
                b's' => Ok(Some(Item::Str)),
                b'c' => Ok(Some(Item::Chars(self.number(1)?))),
                other => Err(err(format!("invalid format option '{}'", other as char))),
            };
        }
        Ok(None)
    }

    /// Padding before an item at offset `at`.
    fn padding(&self, item: Item, at: usize) -> usize {
        let size = item.size();
        let align = size.min(self.align);
        if align <= 1 || !matches!(item, Item::Int { .. } | Item::Float | Item::Double) {
            return 0;
        }
        (align - at % align) % align
    }
}

fn put_int(out: &mut Vec<u8>, v: i64, size: usize, little: bool) {
    let bytes = v.to_le_bytes();
    if little {
        out.extend_from_slice(&bytes[..size]);
    } else {
        out.extend(bytes[..size].iter().rev());
    }
}

fn number(v: Option<&Value>, arg: usize) -> mlua::Result<f64> {
    match v {
        Some(Value::Integer(n)) => Ok(*n as f64),
        Some(Value::Number(n)) => Ok(*n),
        Some(Value::String(s)) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| err(format!("bad argument #{arg} to 'pack' (number expected, got string)"))),
        other => Err(err(format!(
            "bad argument #{arg} to 'pack' (number expected, got {})",
            other.map_or("no value", |v| v.type_name())
        ))),
    }
}

fn pack(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::String> {
    let mut args = args.into_iter();
    let fmt = match args.next() {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        _ => return Err(err("bad argument #1 to 'pack' (string expected)")),
    };
    let values: Vec<Value> = args.collect();
    let mut f = Format::new(&fmt);
    let mut out = Vec::new();
    let mut arg = 0;
    while let Some(item) = f.next()? {
        out.extend(std::iter::repeat_n(0u8, f.padding(item, out.len())));
        let v = values.get(arg);
        match item {
            Item::Pad => {
                out.push(0);
                continue;
            }
            Item::Int { size, .. } => put_int(&mut out, number(v, arg + 2)? as i64, size, f.little),
            Item::Float => {
                let b = (number(v, arg + 2)? as f32).to_bits() as i64;
                put_int(&mut out, b, 4, f.little);
            }
            Item::Double => {
                let b = number(v, arg + 2)?.to_bits() as i64;
                put_int(&mut out, b, 8, f.little);
            }
            Item::Str | Item::Chars(_) => {
                let s = match v {
                    Some(Value::String(s)) => s.as_bytes().to_vec(),
                    Some(Value::Integer(_) | Value::Number(_)) => {
                        v.map(|v| v.to_string()).transpose()?.unwrap_or_default().into_bytes()
                    }
                    other => {
                        return Err(err(format!(
                            "bad argument #{} to 'pack' (string expected, got {})",
                            arg + 2,
                            other.map_or("no value", |v| v.type_name())
                        )));
                    }
                };
                match item {
                    Item::Chars(n) if n > 0 => {
                        if s.len() < n {
                            return Err(err(format!("bad argument #{} to 'pack' (string too short)", arg + 2)));
                        }
                        out.extend_from_slice(&s[..n]);
                    }
                    Item::Chars(_) => out.extend_from_slice(&s),
                    _ => {
                        if s.contains(&0) {
                            return Err(err(format!(
                                "bad argument #{} to 'pack' (string contains zeros)",
                                arg + 2
                            )));
                        }
                        out.extend_from_slice(&s);
                        out.push(0);
                    }
                }
            }
        }
        arg += 1;
    }
    lua.create_string(&out)
}

fn unpack(lua: &Lua, (fmt, data, start): (mlua::String, mlua::String, Option<i64>)) -> mlua::Result<MultiValue> {
    let fmt = fmt.as_bytes().to_vec();
    let data = data.as_bytes().to_vec();
    let mut at = start.unwrap_or(1).max(1) as usize - 1;
    if at > data.len() {
        return Err(err("bad argument #3 to 'unpack' (offset must be 1 or greater)"));
    }
    let mut f = Format::new(&fmt);
    let mut values: Vec<Value> = Vec::new();
    let short = || err("bad argument #2 to 'unpack' (data string too short)");
    while let Some(item) = f.next()? {
        at += f.padding(item, at);
        match item {
            Item::Pad => at += 1,
            Item::Int { size, signed } => {
                let bytes = data.get(at..at + size).ok_or_else(short)?;
                let mut v: u64 = 0;
                for i in 0..size {
                    let b = if f.little { bytes[size - 1 - i] } else { bytes[i] };
                    v = v << 8 | b as u64;
                }
                let n = if signed && size < 8 && v >> (size * 8 - 1) & 1 == 1 {
                    (v | (!0u64 << (size * 8))) as i64 as f64
                } else if signed {
                    v as i64 as f64
                } else {
                    v as f64
                };
                values.push(Value::Number(n));
                at += size;
            }
            Item::Float | Item::Double => {
                let size = item.size();
                let bytes = data.get(at..at + size).ok_or_else(short)?;
                let mut v: u64 = 0;
                for i in 0..size {
                    let b = if f.little { bytes[size - 1 - i] } else { bytes[i] };
                    v = v << 8 | b as u64;
                }
                let n = if size == 4 {
                    f32::from_bits(v as u32) as f64
                } else {
                    f64::from_bits(v)
                };
                values.push(Value::Number(n));
                at += size;
            }
            Item::Str => {
                let rest = data.get(at..).ok_or_else(short)?;
                let end = rest
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or_else(|| err("unfinished string in data"))?;
                values.push(Value::String(lua.create_string(&rest[..end])?));
                at += end + 1;
            }
            Item::Chars(n) => {
                let n = if n == 0 {
                    match values.pop() {
                        Some(Value::Number(len)) if len >= 0.0 => len as usize,
                        _ => return Err(err("format 'c0' needs a previous size")),
                    }
                } else {
                    n
                };
                let bytes = data.get(at..at + n).ok_or_else(short)?;
                values.push(Value::String(lua.create_string(bytes)?));
                at += n;
            }
        }
    }
    values.push(Value::Number((at + 1) as f64));
    Ok(MultiValue::from_vec(values))
}

fn size(_: &Lua, fmt: mlua::String) -> mlua::Result<f64> {
    let fmt = fmt.as_bytes().to_vec();
    let mut f = Format::new(&fmt);
    let mut total = 0;
    while let Some(item) = f.next()? {
        if matches!(item, Item::Str | Item::Chars(0)) {
            return Err(err("options 'c0' - 's' have undefined sizes"));
        }
        total += f.padding(item, total);
        total += match item {
            Item::Chars(n) => n,
            other => other.size(),
        };
    }
    Ok(total as f64)
}

/// The `struct` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("pack", lua.create_function(pack)?)?;
    t.set("unpack", lua.create_function(unpack)?)?;
    t.set("size", lua.create_function(size)?)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_as_the_struct_library() {
        let lua = Lua::new();
        lua.globals().set("struct", library(&lua).unwrap()).unwrap();
        let hex = |code: &str| -> String {
            let s: mlua::String = lua.load(code).eval().unwrap();
            s.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
        };
        assert_eq!(hex("return struct.pack('>I2', 258)"), "0102");
        assert_eq!(hex("return struct.pack('<i', -2)"), "feffffff");
        assert_eq!(hex("return struct.pack('>bBhs', -1, 255, 1, 'ab')"), "ffff0001616200");
        assert_eq!(hex("return struct.pack('!4>bi', 1, 2)"), "0100000000000002");
        assert_eq!(hex("return struct.pack('>d', 0.5)"), "3fe0000000000000");
        let ok: bool = lua
            .load(
                "local a, b, s, c, nxt = struct.unpack('>hI2sc2', struct.pack('>hI2sc2', -300, 65535, 'xyz', 'pq'))
                 local str = struct.unpack('Bc0', struct.pack('Bc0', 3, 'abc'))
                 return a == -300 and b == 65535 and s == 'xyz' and c == 'pq' and nxt == 11
                    and str == 'abc' and struct.size('>iid') == 16 and not pcall(struct.size, 's')",
            )
            .eval()
            .unwrap();
        assert!(ok);
    }
}
