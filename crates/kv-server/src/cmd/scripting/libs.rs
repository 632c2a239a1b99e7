//! The libraries Redis gives scripts besides Lua's own: `bit` (LuaBitOp), `cjson` and
//! `cmsgpack`, with their names, functions and encodings, written after their
//! documentation and Redis's tests (read, not copied). Hand-written because they are Lua C
//! modules: no crate provides them for an embedded interpreter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mlua::{Lua, MultiValue, Table, Value};

/// Registers `bit`, `cjson`, `cmsgpack` and `struct` in the interpreter's globals.
pub fn register(lua: &Lua) -> mlua::Result<()> {
    lua.globals().set("bit", bit(lua)?)?;
    lua.globals().set("cjson", cjson(lua)?)?;
    lua.globals().set("cmsgpack", cmsgpack(lua)?)?;
    lua.globals().set("struct", super::struct_lib::library(lua)?)?;
    Ok(())
}

fn err(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(msg.into())
}

// ---------------------------------------------------------------------------------------
// bit: 32-bit operations on Lua numbers, results signed, as LuaBitOp gives them.

/// A number as LuaBitOp reads it: rounded, wrapped to 32 bits, signed.
fn tobit(x: f64) -> i32 {
    let r = x.round_ties_even();
    if !r.is_finite() {
        return 0;
    }
    r.rem_euclid(4_294_967_296.0) as u64 as u32 as i32
}

fn bit(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let fold = |f: fn(i32, i32) -> i32| {
        move |_: &Lua, args: MultiValue| -> mlua::Result<f64> {
            let mut it = args.into_iter();
            let first = it
                .next()
                .ok_or_else(|| err("bad argument #1 (number expected, got no value)"))?;
            let mut acc = tobit(number(&first)?);
            for v in it {
                acc = f(acc, tobit(number(&v)?));
            }
            Ok(acc as f64)
        }
    };
    t.set("band", lua.create_function(fold(|a, b| a & b))?)?;
    t.set("bor", lua.create_function(fold(|a, b| a | b))?)?;
    t.set("bxor", lua.create_function(fold(|a, b| a ^ b))?)?;
    t.set("tobit", lua.create_function(|_, x: f64| Ok(tobit(x) as f64))?)?;
    t.set("bnot", lua.create_function(|_, x: f64| Ok(!tobit(x) as f64))?)?;
    t.set(
        "bswap",
        lua.create_function(|_, x: f64| Ok(tobit(x).swap_bytes() as f64))?,
    )?;
    let shift = |f: fn(u32, u32) -> u32| {
        move |_: &Lua, (x, n): (f64, f64)| Ok(f(tobit(x) as u32, tobit(n) as u32 & 31) as i32 as f64)
    };
    t.set("lshift", lua.create_function(shift(|x, n| x << n))?)?;
    t.set("rshift", lua.create_function(shift(|x, n| x >> n))?)?;
    t.set("arshift", lua.create_function(shift(|x, n| ((x as i32) >> n) as u32))?)?;
    t.set("rol", lua.create_function(shift(|x, n| x.rotate_left(n)))?)?;
    t.set("ror", lua.create_function(shift(|x, n| x.rotate_right(n)))?)?;
    t.set(
        "tohex",
        lua.create_function(|_, (x, n): (f64, Option<f64>)| {
            let n = n.map_or(8, tobit);
            let (upper, digits) = (n < 0, n.unsigned_abs().min(8) as usize);
            let v = tobit(x) as u32 as u64;
            let s = if upper { format!("{v:08X}") } else { format!("{v:08x}") };
            Ok(s[8 - digits..].to_string())
        })?,
    )?;
    Ok(t)
}

fn number(v: &Value) -> mlua::Result<f64> {
    match v {
        Value::Integer(n) => Ok(*n as f64),
        Value::Number(n) => Ok(*n),
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| err("bad argument (number expected)")),
        other => Err(err(format!(
            "bad argument (number expected, got {})",
            other.type_name()
        ))),
    }
}

/// A number as Lua prints it (`%.14g`), which is how cjson writes numbers.
pub fn format_g14(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{x:.13e}");
    let (mantissa, exp) = sci.split_once('e').expect("scientific notation");
    let exp: i32 = exp.parse().expect("an exponent");
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..14).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = (13 - exp).max(0) as usize;
        trim(&format!("{x:.decimals$}"))
    }
}

// ---------------------------------------------------------------------------------------
// cjson

struct JsonConfig {
    encode_max_depth: AtomicUsize,
    decode_max_depth: AtomicUsize,
    encode_invalid_numbers: AtomicBool,
}

/// `cjson.null`: a NULL light userdata, as cjson's.
fn null() -> Value {
    Value::LightUserData(mlua::LightUserData(std::ptr::null_mut()))
}

fn cjson(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let config = Arc::new(JsonConfig {
        encode_max_depth: AtomicUsize::new(1000),
        decode_max_depth: AtomicUsize::new(1000),
        encode_invalid_numbers: AtomicBool::new(false),
    });
    let c = config.clone();
    t.set(
        "encode",
        lua.create_function(move |lua, v: Value| {
            let mut out = Vec::new();
            json_encode(&v, &c, 0, &mut out)?;
            lua.create_string(&out)
        })?,
    )?;
    let c = config.clone();
    t.set(
        "decode",
        lua.create_function(move |lua, s: mlua::String| {
            let s = s.as_bytes();
            let max = c.decode_max_depth.load(Ordering::Relaxed).min(MAX_RECURSION);
            if let Some((depth, at)) = too_deep(&s, max) {
                return Err(err(format!(
                    "Found too many nested data structures ({depth}) at character {at}"
                )));
            }
            // Bounded above, so serde_json's own bound (128 levels) can go.
            let mut json = serde_json::Deserializer::from_slice(&s);
            json.disable_recursion_limit();
            let parsed = serde::Deserialize::deserialize(&mut json)
                .and_then(|v| json.end().map(|()| v))
                .map_err(|e| err(format!("Expected value but found invalid token: {e}")))?;
            json_decode(lua, &parsed)
        })?,
    )?;
    let setter = |get: fn(&JsonConfig) -> &AtomicUsize, c: Arc<JsonConfig>| {
        move |_: &Lua, n: Option<f64>| {
            if let Some(n) = n {
                if !(1.0..=2_147_483_647.0).contains(&n) {
                    return Err(err("bad argument #1 (expected integer between 1 and 2147483647)"));
                }
                get(&c).store(n as usize, Ordering::Relaxed);
            }
            Ok(get(&c).load(Ordering::Relaxed) as f64)
        }
    };
    t.set(
        "encode_max_depth",
        lua.create_function(setter(|c| &c.encode_max_depth, config.clone()))?,
    )?;
    t.set(
        "decode_max_depth",
        lua.create_function(setter(|c| &c.decode_max_depth, config.clone()))?,
    )?;
    let c = config.clone();
    t.set(
        "encode_invalid_numbers",
        lua.create_function(move |_, v: Option<Value>| {
            if let Some(v) = v {
                c.encode_invalid_numbers.store(
                    matches!(v, Value::Boolean(true))
                        || matches!(&v, Value::String(s) if s.as_bytes().as_ref() == b"on"),
                    Ordering::Relaxed,
                );
            }
            Ok(c.encode_invalid_numbers.load(Ordering::Relaxed))
        })?,
    )?;
    // Settings kvstore accepts and has no use for (its buffers are per call).
    for name in [
        "encode_keep_buffer",
        "decode_invalid_numbers",
        "encode_sparse_array",
        "encode_number_precision",
    ] {
        t.set(name, lua.create_function(|_, _: MultiValue| Ok(true))?)?;
    }
    t.set("null", null())?;
    Ok(t)
}

fn json_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b if b < 0x20 || b == 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.push(b'"');
}

fn json_number(x: f64, config: &JsonConfig, out: &mut Vec<u8>) -> mlua::Result<()> {
    if !x.is_finite() && !config.encode_invalid_numbers.load(Ordering::Relaxed) {
        return Err(err("Cannot serialise number: must not be NaN or Infinity"));
    }
    out.extend_from_slice(format_g14(x).as_bytes());
    Ok(())
}

/// The array length of `t` when every key is a positive integer (cjson's rule), else `None`.
fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
    let mut max = 0usize;
    let mut count = 0usize;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match k {
            Value::Integer(n) if n >= 1 => n as usize,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n as usize,
            _ => return Ok(None),
        };
        max = max.max(n);
        count += 1;
    }
    // Excessively sparse arrays are refused, as cjson refuses them by default.
    if max > 10 && max > count * 2 {
        return Err(err("Cannot serialise table: excessively sparse array"));
    }
    Ok(Some(max))
}

fn json_encode(v: &Value, config: &JsonConfig, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Number(x) => json_number(*x, config, out)?,
        Value::String(s) => json_string(&s.as_bytes(), out),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > config.encode_max_depth.load(Ordering::Relaxed).min(MAX_RECURSION) {
                return Err(err(format!("Cannot serialise, excessive nesting ({depth})")));
            }
            match array_len(t)? {
                Some(n) if n > 0 => {
                    out.push(b'[');
                    for i in 1..=n {
                        if i > 1 {
                            out.push(b',');
                        }
                        json_encode(&t.raw_get::<Value>(i)?, config, depth, out)?;
                    }
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.pairs::<Value, Value>() {
                        let (k, val) = pair?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::String(s) => json_string(&s.as_bytes(), out),
                            Value::Integer(n) => json_string(n.to_string().as_bytes(), out),
                            Value::Number(x) => json_string(format_g14(*x).as_bytes(), out),
                            other => {
                                return Err(err(format!(
                                    "Cannot serialise {}: table key must be a number or string",
                                    other.type_name()
                                )));
                            }
                        }
                        out.push(b':');
                        json_encode(&val, config, depth, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            )));
        }
    }
    Ok(())
}

/// Where JSON text first nests past `max` levels, as cjson reports it: the depth reached and
/// the 1-based position of the bracket. Brackets inside strings are text.
fn too_deep(s: &[u8], max: usize) -> Option<(usize, usize)> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &c) in s.iter().enumerate() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some((depth, i + 1));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Parsed JSON as Lua values (its depth was bounded by [`too_deep`]).
fn json_decode(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => null(),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_decode(lua, item)?)?;
            }
            Value::Table(t)
        }
        J::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), json_decode(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

// ---------------------------------------------------------------------------------------
// cmsgpack

/// Tables nested deeper than this are packed as nil (so a cycle ends), as cmsgpack does.
const MSGPACK_MAX_NESTING: usize = 16;

/// The deepest nesting `cmsgpack.unpack` builds, and `cjson.encode` and `cjson.decode`
/// follow whatever `encode_max_depth`/`decode_max_depth` say (1,000 by default, as cjson's). Both recurse, here in Rust and in
/// Redis in C; Redis stops where Lua's stack of 8,000 slots runs out. Each level here holds
/// an `mlua` reference (8,000 of those too; past them `mlua` panics) and up to 1 KiB of
/// stack in a release build (measured; a kvserver's threads have 8 MiB, `kvstore::runtime`),
/// so the bound is lower: 100,000 nested arrays once took a connection down with a panic.
const MAX_RECURSION: usize = 1000;

fn cmsgpack(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let pack = lua.create_function(|lua, args: MultiValue| {
        if args.is_empty() {
            return Err(err("MessagePack pack needs input."));
        }
        let mut out = Vec::new();
        for v in args.iter() {
            pack_value(v, 0, &mut out)?;
        }
        lua.create_string(&out)
    })?;
    t.set("pack", pack)?;
    t.set(
        "unpack",
        lua.create_function(|lua, s: mlua::String| {
            let b = s.as_bytes();
            let (values, _) = unpack_values(lua, &b, 0, 0)?;
            Ok(MultiValue::from_vec(values))
        })?,
    )?;
    t.set(
        "unpack_one",
        lua.create_function(|lua, (s, offset): (mlua::String, Option<i64>)| {
            unpack_limited(lua, &s.as_bytes(), 1, offset.unwrap_or(0))
        })?,
    )?;
    t.set(
        "unpack_limit",
        lua.create_function(|lua, (s, limit, offset): (mlua::String, i64, Option<i64>)| {
            unpack_limited(lua, &s.as_bytes(), limit.max(0) as usize, offset.unwrap_or(0))
        })?,
    )?;
    Ok(t)
}

/// `unpack_one`/`unpack_limit`: the offset after what was read (-1 at the end), then up to
/// `limit` values (0: all) from `offset`.
fn unpack_limited(lua: &Lua, b: &[u8], limit: usize, offset: i64) -> mlua::Result<MultiValue> {
    if offset < 0 || offset as usize > b.len() {
        return Err(err("Start offset is greater than input length."));
    }
    let (values, at) = unpack_values(lua, b, offset as usize, limit)?;
    let next = if at >= b.len() { -1.0 } else { at as f64 };
    let mut all = vec![Value::Number(next)];
    all.extend(values);
    Ok(MultiValue::from_vec(all))
}

fn unpack_values(lua: &Lua, b: &[u8], mut at: usize, limit: usize) -> mlua::Result<(Vec<Value>, usize)> {
    let mut values = Vec::new();
    while at < b.len() && (limit == 0 || values.len() < limit) {
        let (v, next) = unpack_value(lua, b, at, 0)?;
        values.push(v);
        at = next;
    }
    Ok((values, at))
}

fn pack_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        match n {
            0..=127 => out.push(n as u8),
            128..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                out.push(0xcf);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn pack_len(len: usize, fix: u8, fix_max: usize, codes: [u8; 2], out: &mut Vec<u8>) {
    if len <= fix_max {
        out.push(fix | len as u8);
    } else if len <= 0xffff {
        out.push(codes[0]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(codes[1]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn pack_value(v: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(n) => pack_int(*n, out),
        Value::Number(x) => {
            if x.fract() == 0.0 && x.abs() < 9.2e18 {
                pack_int(*x as i64, out);
            } else if (*x as f32) as f64 == *x || x.is_nan() {
                out.push(0xca);
                out.extend_from_slice(&(*x as f32).to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&x.to_be_bytes());
            }
        }
        Value::String(s) => {
            let s = s.as_bytes();
            let len = s.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else if len <= 0xff {
                out.extend_from_slice(&[0xd9, len as u8]);
            } else {
                pack_len(len, 0, 0, [0xda, 0xdb], out);
            }
            out.extend_from_slice(&s);
        }
        Value::Table(t) if level < MSGPACK_MAX_NESTING => {
            let mut max = 0usize;
            let mut count = 0usize;
            let mut array = true;
            for pair in t.pairs::<Value, Value>() {
                let (k, _) = pair?;
                count += 1;
                match k {
                    Value::Integer(n) if n >= 1 => max = max.max(n as usize),
                    Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => max = max.max(n as usize),
                    _ => array = false,
                }
            }
            if array && max == count {
                pack_len(count, 0x90, 15, [0xdc, 0xdd], out);
                for i in 1..=count {
                    pack_value(&t.raw_get::<Value>(i)?, level + 1, out)?;
                }
            } else {
                pack_len(count, 0x80, 15, [0xde, 0xdf], out);
                for pair in t.pairs::<Value, Value>() {
                    let (k, val) = pair?;
                    pack_value(&k, level + 1, out)?;
                    pack_value(&val, level + 1, out)?;
                }
            }
        }
        // nil, functions and the like, and tables past the nesting limit.
        _ => out.push(0xc0),
    }
    Ok(())
}

fn unpack_value(lua: &Lua, b: &[u8], at: usize, depth: usize) -> mlua::Result<(Value, usize)> {
    let missing = || err("Missing bytes in input.");
    let take = |from: usize, n: usize| -> mlua::Result<&[u8]> { b.get(from..from + n).ok_or_else(missing) };
    let be = |from: usize, n: usize| -> mlua::Result<u64> {
        Ok(take(from, n)?.iter().fold(0u64, |a, &x| a << 8 | x as u64))
    };
    let tag = *b.get(at).ok_or_else(missing)?;
    let p = at + 1;
    let string = |from: usize, len: usize| -> mlua::Result<(Value, usize)> {
        Ok((Value::String(lua.create_string(take(from, len)?)?), from + len))
    };
    let array = |mut from: usize, n: usize| -> mlua::Result<(Value, usize)> {
        if depth >= MAX_RECURSION {
            return Err(err("stack overflow (in function mp_decode_to_lua_array)"));
        }
        let t = lua.create_table_with_capacity(n.min(1 << 16), 0)?;
        for i in 1..=n {
            let (v, next) = unpack_value(lua, b, from, depth + 1)?;
            t.raw_set(i, v)?;
            from = next;
        }
        Ok((Value::Table(t), from))
    };
    let map = |mut from: usize, n: usize| -> mlua::Result<(Value, usize)> {
        if depth >= MAX_RECURSION {
            return Err(err("stack overflow (in function mp_decode_to_lua_hash)"));
        }
        let t = lua.create_table_with_capacity(0, n.min(1 << 16))?;
        for _ in 0..n {
            let (k, next) = unpack_value(lua, b, from, depth + 1)?;
            let (v, next) = unpack_value(lua, b, next, depth + 1)?;
            if !k.is_nil() {
                t.raw_set(k, v)?;
            }
            from = next;
        }
        Ok((Value::Table(t), from))
    };
    let num = |x: f64, next: usize| Ok((Value::Number(x), next));
    match tag {
        0x00..=0x7f => num(tag as f64, p),
        0x80..=0x8f => map(p, (tag & 0x0f) as usize),
        0x90..=0x9f => array(p, (tag & 0x0f) as usize),
        0xa0..=0xbf => string(p, (tag & 0x1f) as usize),
        0xc0 => Ok((Value::Nil, p)),
        0xc2 => Ok((Value::Boolean(false), p)),
        0xc3 => Ok((Value::Boolean(true), p)),
        0xc4 | 0xd9 => string(p + 1, be(p, 1)? as usize),
        0xc5 | 0xda => string(p + 2, be(p, 2)? as usize),
        0xc6 | 0xdb => string(p + 4, be(p, 4)? as usize),
        0xca => num(f32::from_bits(be(p, 4)? as u32) as f64, p + 4),
        0xcb => num(f64::from_bits(be(p, 8)?), p + 8),
        0xcc => num(be(p, 1)? as f64, p + 1),
        0xcd => num(be(p, 2)? as f64, p + 2),
        0xce => num(be(p, 4)? as f64, p + 4),
        0xcf => num(be(p, 8)? as f64, p + 8),
        0xd0 => num(be(p, 1)? as u8 as i8 as f64, p + 1),
        0xd1 => num(be(p, 2)? as u16 as i16 as f64, p + 2),
        0xd2 => num(be(p, 4)? as u32 as i32 as f64, p + 4),
        0xd3 => num(be(p, 8)? as i64 as f64, p + 8),
        0xdc => array(p + 2, be(p, 2)? as usize),
        0xdd => array(p + 4, be(p, 4)? as usize),
        0xde => map(p + 2, be(p, 2)? as usize),
        0xdf => map(p + 4, be(p, 4)? as usize),
        0xe0..=0xff => num(tag as i8 as f64, p),
        _ => Err(err("Bad data format in input.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        let lua = Lua::new();
        register(&lua).unwrap();
        lua
    }

    #[test]
    fn numbers_print_as_lua_prints_them() {
        for (x, s) in [
            (0.0, "0"),
            (-5000.0, "-5000"),
            (0.0003, "0.0003"),
            (1023.2, "1023.2"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (123456789012345.0, "1.2345678901234e+14"),
            (1.5e-7, "1.5e-07"),
        ] {
            assert_eq!(format_g14(x), s);
        }
    }

    #[test]
    fn bit_matches_luabitop() {
        let lua = lua();
        let ok: bool = lua
            .load(
                "return bit.tobit(1) == 1 and bit.band(1) == 1 and bit.bxor(1, 2) == 3
                 and bit.bor(1,2,4,8,16,32,64,128) == 255 and bit.tobit(0xffffffff) == -1
                 and bit.lshift(1, 31) == -2147483648 and bit.rshift(-1, 28) == 15
                 and bit.arshift(-256, 4) == -16 and bit.tohex(255, -4) == '00FF'
                 and bit.rol(0x12345678, 12) == 0x45678123 and bit.bnot(0) == -1",
            )
            .eval()
            .unwrap();
        assert!(ok);
    }

    #[test]
    fn json_round_trips_and_refuses_what_cjson_refuses() {
        let lua = lua();
        let s: String = lua
            .load(r#"return table.concat(cjson.decode("[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]"), " ")"#)
            .eval()
            .unwrap();
        assert_eq!(s, "0 -5000 -1 0.0003 1023.2 0");
        let s: String = lua
            .load(r#"return cjson.encode({1, "a/b", {x = true}, 2.5})"#)
            .eval()
            .unwrap();
        assert_eq!(s, r#"[1,"a\/b",{"x":true},2.5]"#);
        let s: String = lua.load(r#"return cjson.encode({})"#).eval().unwrap();
        assert_eq!(s, "{}");
        let ok: bool = lua
            .load(
                r#"local t = {} t[false] = 1
                   return not pcall(cjson.encode, t) and not pcall(cjson.encode, {n = 0/0})
                   and cjson.decode('[null]')[1] == cjson.null"#,
            )
            .eval()
            .unwrap();
        assert!(ok);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        // 1,000 levels take up to 1 MiB of stack in a release build (measured) and about 8
        // in a debug one: this test gets a thread with room for the debug build.
        std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn(deep_nesting)
            .unwrap()
            .join()
            .unwrap();
    }

    fn deep_nesting() {
        let lua = lua();
        // How many tables deep the value `expr` builds is, following each one's first item.
        let depth = |setup: &str, expr: String| -> i64 {
            let code =
                format!("{setup} local t, d = {expr}, 0 while type(t) == 'table' do t, d = t[1], d + 1 end return d");
            lua.load(code).eval().unwrap()
        };
        let fails_with = |code: String, text: &str| {
            let e = lua.load(&code).exec().unwrap_err().to_string();
            assert!(e.contains(text), "{code}: {e}");
        };
        let msgpack = |n: usize| format!("cmsgpack.unpack(string.rep(string.char(0x91), {n}) .. string.char(1))");
        assert_eq!(depth("", msgpack(MAX_RECURSION)), MAX_RECURSION as i64);
        fails_with(
            format!("return {}", msgpack(100_000)),
            "stack overflow (in function mp_decode_to_lua_array)",
        );
        fails_with(
            "return cmsgpack.unpack(string.rep(string.char(0x81, 1), 100000) .. string.char(1))".into(),
            "mp_decode_to_lua_hash",
        );
        // A raised encode_max_depth does not let cjson.encode recurse without bound.
        let deep = "local t = {} local c = t for i = 1, 100000 do c[1] = {} c = c[1] end";
        fails_with(
            format!("cjson.encode_max_depth(1e9) {deep} return cjson.encode(t)"),
            "excessive nesting",
        );
        // cjson.decode: cjson's 1,000 levels (serde_json alone stops at 128), its error past
        // them, and brackets inside strings are text.
        let json = |n: usize| format!("cjson.decode(string.rep('[', {n}) .. '\"[[{{\"' .. string.rep(']', {n}))");
        assert_eq!(
            depth("cjson.decode_max_depth(1e9)", json(MAX_RECURSION)),
            MAX_RECURSION as i64
        );
        fails_with(
            format!("return {}", json(100_000)),
            "Found too many nested data structures (1001) at character 1001",
        );
    }

    #[test]
    fn msgpack_encodes_as_cmsgpack_does() {
        let lua = lua();
        let hex = |code: &str| -> String {
            let s: mlua::String = lua.load(code).eval().unwrap();
            s.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
        };
        assert_eq!(hex("return cmsgpack.pack(0.1)"), "cb3fb999999999999a");
        assert_eq!(hex("return cmsgpack.pack(-1099511627776)"), "d3ffffff0000000000");
        assert_eq!(hex("return cmsgpack.pack({1, 2})"), "920102");
        let ok: bool = lua
            .load(
                r#"local big = string.rep("x", 70000)
                   local t = cmsgpack.unpack(cmsgpack.pack({a = 1, b = {1, 2, 3}, s = big, f = 0.5, n = -100000}))
                   local off, one = cmsgpack.unpack_limit(cmsgpack.pack("a", "b"), 1, 0)
                   local off2, two = cmsgpack.unpack_limit(cmsgpack.pack("a", "b"), 1, off)
                   return t.a == 1 and t.b[3] == 3 and t.s == big and t.f == 0.5 and t.n == -100000
                      and one == "a" and two == "b" and off2 == -1"#,
            )
            .eval()
            .unwrap();
        assert!(ok);
    }
}
