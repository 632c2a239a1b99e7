//! Geo commands: points in a sorted set, each scored by its 52-bit interleaved geohash, as
//! Redis stores them (a `GEOADD` is a `ZADD`, and `ZRANGE` shows the same scores). Searches
//! walk the geohash box around the centre and its eight neighbours in Redis's order, so
//! unsorted results come back in the order Redis returns them.
//!
//! Hand-written after Redis's `geohash.c`, `geohash_helper.c` and `geo.c` (read, not copied):
//! the bit layout, the box arithmetic and the distance formula are the compatibility.

use bytes::Bytes;
use kv_proto::{Frame, Kind, Out};
use kv_store::Object;
use kv_store::object::ZSetObj;

use super::family::{self, Entry, error, frame_reply};
use super::zsets;
use crate::node::{Node, Pending};

pub const COMMANDS: &[Entry] = &[
    ("geoadd", geoadd, false),
    ("geodist", geodist, true),
    ("geohash", geohash, true),
    ("geopos", geopos, true),
    ("georadius", search, false),
    ("georadius_ro", search, true),
    ("georadiusbymember", search, false),
    ("georadiusbymember_ro", search, true),
    ("geosearch", search, true),
    ("geosearchstore", search, false),
];

const LAT_MIN: f64 = -85.051_128_78;
const LAT_MAX: f64 = 85.051_128_78;
const LON_MIN: f64 = -180.0;
const LON_MAX: f64 = 180.0;
const STEP_MAX: u32 = 26;
const EARTH_RADIUS: f64 = 6_372_797.560_856;
const MERCATOR_MAX: f64 = 20_037_726.37;

/// A geohash: `bits` at precision `step` (2·step bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hash {
    bits: u64,
    step: u32,
}

impl Hash {
    const ZERO: Hash = Hash { bits: 0, step: 0 };
}

/// A rectangle of coordinates.
#[derive(Debug, Clone, Copy)]
struct Area {
    lon: (f64, f64),
    lat: (f64, f64),
}

/// Spreads the low 32 bits of `x` to the even bit positions.
fn spread(x: u32) -> u64 {
    let mut x = x as u64;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Gathers the even bit positions of `x` into 32 bits.
fn squash(mut x: u64) -> u32 {
    x &= 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    ((x | (x >> 16)) & 0x0000_0000_FFFF_FFFF) as u32
}

/// Latitude in the even bits, longitude in the odd ones.
fn encode_in(lon_range: (f64, f64), lat_range: (f64, f64), lon: f64, lat: f64, step: u32) -> Option<Hash> {
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_range.0 || lat > lat_range.1 || lon < lon_range.0 || lon > lon_range.1 {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_off = (lat - lat_range.0) / (lat_range.1 - lat_range.0) * scale;
    let lon_off = (lon - lon_range.0) / (lon_range.1 - lon_range.0) * scale;
    Some(Hash {
        bits: spread(lat_off as u32) | (spread(lon_off as u32) << 1),
        step,
    })
}

fn encode(lon: f64, lat: f64, step: u32) -> Option<Hash> {
    encode_in((LON_MIN, LON_MAX), (LAT_MIN, LAT_MAX), lon, lat, step)
}

fn decode(h: Hash) -> Area {
    let (ilat, ilon) = (squash(h.bits) as f64, squash(h.bits >> 1) as f64);
    let scale = (1u64 << h.step) as f64;
    let (lat_span, lon_span) = (LAT_MAX - LAT_MIN, LON_MAX - LON_MIN);
    Area {
        lat: (
            LAT_MIN + ilat / scale * lat_span,
            LAT_MIN + (ilat + 1.0) / scale * lat_span,
        ),
        lon: (
            LON_MIN + ilon / scale * lon_span,
            LON_MIN + (ilon + 1.0) / scale * lon_span,
        ),
    }
}

/// The centre of a score's cell: the point as Redis reports it.
fn point_of(score: f64) -> (f64, f64) {
    let a = decode(Hash {
        bits: score as u64,
        step: STEP_MAX,
    });
    (
        ((a.lon.0 + a.lon.1) / 2.0).clamp(LON_MIN, LON_MAX),
        ((a.lat.0 + a.lat.1) / 2.0).clamp(LAT_MIN, LAT_MAX),
    )
}

fn score_of(lon: f64, lat: f64) -> Option<f64> {
    encode(lon, lat, STEP_MAX).map(|h| h.bits as f64)
}

fn move_x(h: Hash, d: i8) -> Hash {
    let x = h.bits & 0xAAAA_AAAA_AAAA_AAAA;
    let y = h.bits & 0x5555_5555_5555_5555;
    let zz = 0x5555_5555_5555_5555u64 >> (64 - h.step * 2);
    let x = if d > 0 {
        x.wrapping_add(zz + 1)
    } else {
        (x | zz).wrapping_sub(zz + 1)
    };
    Hash {
        bits: (x & (0xAAAA_AAAA_AAAA_AAAAu64 >> (64 - h.step * 2))) | y,
        step: h.step,
    }
}

fn move_y(h: Hash, d: i8) -> Hash {
    let x = h.bits & 0xAAAA_AAAA_AAAA_AAAA;
    let y = h.bits & 0x5555_5555_5555_5555;
    let zz = 0xAAAA_AAAA_AAAA_AAAAu64 >> (64 - h.step * 2);
    let y = if d > 0 {
        y.wrapping_add(zz + 1)
    } else {
        (y | zz).wrapping_sub(zz + 1)
    };
    Hash {
        bits: x | (y & (0x5555_5555_5555_5555u64 >> (64 - h.step * 2))),
        step: h.step,
    }
}

fn rad(d: f64) -> f64 {
    d * std::f64::consts::PI / 180.0
}

fn deg(r: f64) -> f64 {
    r / (std::f64::consts::PI / 180.0)
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS * (rad(lat2) - rad(lat1)).abs()
}

/// Haversine distance in meters, as Redis computes it.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let v = ((rad(lon2) - rad(lon1)) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (rad(lat1), rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    2.0 * EARTH_RADIUS * (u * u + lat1r.cos() * lat2r.cos() * v * v).sqrt().asin()
}

/// What a search covers, in meters.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Radius(f64),
    Box { width: f64, height: f64 },
}

/// The distance from the centre when `(lon, lat)` is inside `shape`.
fn within(shape: Shape, center: (f64, f64), lon: f64, lat: f64) -> Option<f64> {
    match shape {
        Shape::Radius(r) => {
            let d = distance(center.0, center.1, lon, lat);
            (d <= r).then_some(d)
        }
        Shape::Box { width, height } => {
            if lat_distance(lat, center.1) > height / 2.0 {
                return None;
            }
            if distance(lon, lat, center.0, lat) > width / 2.0 {
                return None;
            }
            Some(distance(center.0, center.1, lon, lat))
        }
    }
}

fn steps_for(mut range: f64, lat: f64) -> u32 {
    if range == 0.0 {
        return STEP_MAX;
    }
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, STEP_MAX as i32) as u32
}

/// The boxes a search looks in, Redis's order: the centre's, then north, south, east, west,
/// north-east, north-west, south-east, south-west (useless ones zeroed).
fn boxes(shape: Shape, center: (f64, f64)) -> [Hash; 9] {
    let (lon, lat) = center;
    let (half_h, half_w) = match shape {
        Shape::Radius(r) => (r, r),
        Shape::Box { width, height } => (height / 2.0, width / 2.0),
    };
    let lat_delta = deg(half_h / EARTH_RADIUS);
    let lon_top = deg(half_w / EARTH_RADIUS / rad(lat + lat_delta).cos());
    let lon_bottom = deg(half_w / EARTH_RADIUS / rad(lat - lat_delta).cos());
    let south = lat < 0.0;
    let (min_lon, max_lon) = if south {
        (lon - lon_bottom, lon + lon_bottom)
    } else {
        (lon - lon_top, lon + lon_top)
    };
    let (min_lat, max_lat) = (lat - lat_delta, lat + lat_delta);
    let radius = match shape {
        Shape::Radius(r) => r,
        Shape::Box { width, height } => ((width / 2.0).powi(2) + (height / 2.0).powi(2)).sqrt(),
    };
    let mut steps = steps_for(radius, lat);
    let around = |steps| {
        let h = encode(lon, lat, steps).unwrap_or(Hash::ZERO);
        let n = [
            h,
            move_y(h, 1),
            move_y(h, -1),
            move_x(h, 1),
            move_x(h, -1),
            move_y(move_x(h, 1), 1),
            move_y(move_x(h, -1), 1),
            move_y(move_x(h, 1), -1),
            move_y(move_x(h, -1), -1),
        ];
        (h, n)
    };
    let (_, mut n) = around(steps);
    let (north, south_a, east, west) = (decode(n[1]), decode(n[2]), decode(n[3]), decode(n[4]));
    let decrease = north.lat.1 < max_lat || south_a.lat.0 > min_lat || east.lon.1 < max_lon || west.lon.0 > min_lon;
    if steps > 1 && decrease {
        steps -= 1;
        n = around(steps).1;
    }
    if steps >= 2 {
        let area = decode(n[0]);
        let mut zero = |i: &[usize]| i.iter().for_each(|&i| n[i] = Hash::ZERO);
        if area.lat.0 < min_lat {
            zero(&[2, 8, 7]);
        }
        if area.lat.1 > max_lat {
            zero(&[1, 5, 6]);
        }
        if area.lon.0 < min_lon {
            zero(&[4, 8, 6]);
        }
        if area.lon.1 > max_lon {
            zero(&[3, 7, 5]);
        }
    }
    n
}

/// A point found by a search.
struct Found {
    member: Bytes,
    score: f64,
    dist: f64,
    lon: f64,
    lat: f64,
}

/// The members of `z` inside `shape` around `center`, in Redis's order; at most `limit`
/// when not 0.
fn find(z: &ZSetObj, shape: Shape, center: (f64, f64), limit: usize) -> Vec<Found> {
    let n = boxes(shape, center);
    let mut out = Vec::new();
    let mut last: Option<usize> = None;
    for i in 0..n.len() {
        if n[i] == Hash::ZERO {
            continue;
        }
        if let Some(l) = last
            && l != 0
            && n[i] == n[l]
        {
            continue;
        }
        if limit != 0 && out.len() >= limit {
            break;
        }
        let shift = 52 - n[i].step * 2;
        let (min, max) = ((n[i].bits << shift) as f64, ((n[i].bits + 1) << shift) as f64);
        for (m, s) in z.from_score(min).take_while(|(_, s)| *s < max) {
            let (lon, lat) = point_of(s);
            if let Some(dist) = within(shape, center, lon, lat) {
                out.push(Found {
                    member: Bytes::copy_from_slice(m),
                    score: s,
                    dist,
                    lon,
                    lat,
                });
                if limit != 0 && out.len() >= limit {
                    break;
                }
            }
        }
        last = Some(i);
    }
    out
}

/// `(lon, lat)` from two arguments; `Err` with the error reply.
fn lon_lat(a: &[Bytes]) -> Result<(f64, f64), String> {
    let lon = super::strings::parse_float(&a[0]).ok_or(family::NOT_FLOAT)?;
    let lat = super::strings::parse_float(&a[1]).ok_or(family::NOT_FLOAT)?;
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(format!("ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"));
    }
    Ok((lon, lat))
}

/// Meters per unit.
fn unit(b: &[u8]) -> Result<f64, String> {
    Ok(match b.to_ascii_lowercase().as_slice() {
        b"m" => 1.0,
        b"km" => 1000.0,
        b"ft" => 0.3048,
        b"mi" => 1609.34,
        _ => return Err("ERR unsupported unit provided. please use M, KM, FT, MI".into()),
    })
}

fn radius(a: &[Bytes]) -> Result<(f64, f64), String> {
    let r = super::strings::parse_float(&a[0]).ok_or("ERR need numeric radius")?;
    if r < 0.0 {
        return Err("ERR radius cannot be negative".into());
    }
    Ok((r, unit(&a[1])?))
}

/// A distance as Redis replies with one: 4 decimals.
fn dist_frame(d: f64) -> Frame {
    Frame::Bulk(Bytes::from(format!("{d:.4}")))
}

/// A coordinate as Redis replies with one: 17 decimals, trailing zeros trimmed.
fn coord_frame(resp3: bool, v: f64) -> Frame {
    if resp3 {
        return Frame::Double(v);
    }
    let s = format!("{v:.17}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    Frame::Bulk(Bytes::from(s.to_string()))
}

/// `GEOADD key [NX|XX] [CH] longitude latitude member [...]`: a `ZADD` of geohash scores.
fn geoadd(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let mut i = 2;
    let (mut nx, mut xx) = (false, false);
    while i < a.len() {
        match a[i].to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"CH" => {}
            _ => break,
        }
        i += 1;
    }
    if !(a.len() - i).is_multiple_of(3) || a.len() == i || (nx && xx) {
        return error(out, family::SYNTAX);
    }
    let mut zadd: Vec<Bytes> = vec![Bytes::from_static(b"ZADD"), a[1].clone()];
    zadd.extend_from_slice(&a[2..i]);
    for t in a[i..].chunks_exact(3) {
        match lon_lat(&t[..2]) {
            Ok((lon, lat)) => {
                let score = score_of(lon, lat).unwrap_or(0.0);
                zadd.push(Bytes::from((score as u64).to_string()));
                zadd.push(t[2].clone());
            }
            Err(e) => return error(out, &e),
        }
    }
    zsets::zadd_args(node, &zadd, out)
}

/// `GEODIST key member1 member2 [m|km|ft|mi]`.
fn geodist(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let per = match a.len() {
        4 => 1.0,
        5 => match unit(&a[4]) {
            Ok(u) => u,
            Err(e) => return error(out, &e),
        },
        _ => return error(out, family::SYNTAX),
    };
    family::read(node, a, out, Kind::ZSet, Object::as_zset, |z| {
        let (Some(s1), Some(s2)) = (z.and_then(|z| z.score(&a[2])), z.and_then(|z| z.score(&a[3]))) else {
            return Frame::Null;
        };
        let ((lon1, lat1), (lon2, lat2)) = (point_of(s1), point_of(s2));
        dist_frame(distance(lon1, lat1, lon2, lat2) / per)
    })
}

/// `GEOHASH key [member ...]`: standard 11-character geohashes.
fn geohash(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    family::read(node, a, out, Kind::ZSet, Object::as_zset, |z| {
        Frame::Array(
            a[2..]
                .iter()
                .map(|m| {
                    let Some(score) = z.and_then(|z| z.score(m)) else {
                        return Frame::Null;
                    };
                    let (lon, lat) = point_of(score);
                    let Some(h) = encode_in((-180.0, 180.0), (-90.0, 90.0), lon, lat, STEP_MAX) else {
                        return Frame::Null;
                    };
                    let text: Vec<u8> = (0..11)
                        .map(|i| {
                            let idx = if i == 10 {
                                0
                            } else {
                                (h.bits >> (52 - (i + 1) * 5)) & 0x1f
                            };
                            ALPHABET[idx as usize]
                        })
                        .collect();
                    Frame::Bulk(Bytes::from(text))
                })
                .collect(),
        )
    })
}

/// `GEOPOS key [member ...]`.
fn geopos(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let resp3 = family::resp3(out);
    family::read(node, a, out, Kind::ZSet, Object::as_zset, |z| {
        Frame::Array(
            a[2..]
                .iter()
                .map(|m| match z.and_then(|z| z.score(m)) {
                    Some(s) => {
                        let (lon, lat) = point_of(s);
                        Frame::Array(vec![coord_frame(resp3, lon), coord_frame(resp3, lat)])
                    }
                    None => Frame::NullArray,
                })
                .collect(),
        )
    })
}

/// Where a search is centred.
enum From {
    Member(Bytes),
    Point(f64, f64),
}

/// A parsed search.
struct Search {
    src: Bytes,
    from: Option<From>,
    shape: Option<(Shape, f64)>,
    with_dist: bool,
    with_hash: bool,
    with_coord: bool,
    any: bool,
    count: usize,
    /// Ascending (true) or descending distance; `None`: Redis's own order.
    sort: Option<bool>,
    store: Option<Bytes>,
    store_dist: bool,
}

fn parse_search(a: &[Bytes]) -> Result<Search, String> {
    let name = a[0].to_ascii_lowercase();
    let (geosearch, store_form) = (name.starts_with(b"geosearch"), &name[..] == b"geosearchstore");
    let by_member = name.starts_with(b"georadiusbymember");
    let read_only = name.ends_with(b"_ro");
    let mut s = Search {
        src: if store_form { a[2].clone() } else { a[1].clone() },
        from: None,
        shape: None,
        with_dist: false,
        with_hash: false,
        with_coord: false,
        any: false,
        count: 0,
        sort: None,
        store: store_form.then(|| a[1].clone()),
        store_dist: false,
    };
    let base = if geosearch {
        if store_form { 3 } else { 2 }
    } else if by_member {
        s.from = Some(From::Member(a[2].clone()));
        let (r, u) = radius(&a[3..5])?;
        s.shape = Some((Shape::Radius(r), u));
        5
    } else {
        let (lon, lat) = lon_lat(&a[2..4])?;
        s.from = Some(From::Point(lon, lat));
        let (r, u) = radius(&a[4..6])?;
        s.shape = Some((Shape::Radius(r), u));
        6
    };
    let (mut from_member, mut from_loc, mut by_radius, mut by_box) = (false, false, false, false);
    let rest = &a[base..];
    let mut i = 0;
    while i < rest.len() {
        let left = rest.len() - i - 1;
        match rest[i].to_ascii_lowercase().as_slice() {
            b"withdist" => s.with_dist = true,
            b"withhash" => s.with_hash = true,
            b"withcoord" => s.with_coord = true,
            b"any" => s.any = true,
            b"asc" => s.sort = Some(true),
            b"desc" => s.sort = Some(false),
            b"count" if left >= 1 => {
                let n = family::int(&rest[i + 1])?;
                if n <= 0 {
                    return Err("ERR COUNT must be > 0".into());
                }
                s.count = n as usize;
                i += 1;
            }
            o @ (b"store" | b"storedist") if left >= 1 && !geosearch && !read_only => {
                s.store = Some(rest[i + 1].clone());
                s.store_dist = o == b"storedist";
                i += 1;
            }
            b"storedist" if store_form => s.store_dist = true,
            b"frommember" if left >= 1 && geosearch && !from_loc => {
                s.from = Some(From::Member(rest[i + 1].clone()));
                from_member = true;
                i += 1;
            }
            b"fromlonlat" if left >= 2 && geosearch && !from_member => {
                let (lon, lat) = lon_lat(&rest[i + 1..i + 3])?;
                s.from = Some(From::Point(lon, lat));
                from_loc = true;
                i += 2;
            }
            b"byradius" if left >= 2 && geosearch && !by_box => {
                let (r, u) = radius(&rest[i + 1..i + 3])?;
                s.shape = Some((Shape::Radius(r), u));
                by_radius = true;
                i += 2;
            }
            b"bybox" if left >= 3 && geosearch && !by_radius => {
                let w = super::strings::parse_float(&rest[i + 1]).ok_or("ERR need numeric width")?;
                let h = super::strings::parse_float(&rest[i + 2]).ok_or("ERR need numeric height")?;
                if w < 0.0 || h < 0.0 {
                    return Err("ERR height or width cannot be negative".into());
                }
                s.shape = Some((Shape::Box { width: w, height: h }, unit(&rest[i + 3])?));
                by_box = true;
                i += 3;
            }
            _ => return Err(family::SYNTAX.into()),
        }
        i += 1;
    }
    if (s.store.is_some() || s.store_dist) && (s.with_dist || s.with_hash || s.with_coord) {
        return Err(format!(
            "ERR {} is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            if store_form {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            }
        ));
    }
    let display = String::from_utf8_lossy(&a[0]).into_owned();
    if geosearch && !(from_member || from_loc) {
        return Err(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {display}"
        ));
    }
    if geosearch && !(by_radius || by_box) {
        return Err(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {display}"
        ));
    }
    if s.any && s.count == 0 {
        return Err("ERR the ANY argument requires COUNT argument".into());
    }
    if s.count != 0 && s.sort.is_none() && !s.any {
        s.sort = Some(true);
    }
    Ok(s)
}

/// The `GEORADIUS*` and `GEOSEARCH*` commands.
fn search(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let s = match parse_search(a) {
        Ok(s) => s,
        Err(e) => return error(out, &e),
    };
    let resp3 = family::resp3(out);
    let run = |z: &ZSetObj| -> Result<Vec<Found>, &'static str> {
        let center = match &s.from {
            Some(From::Point(lon, lat)) => (*lon, *lat),
            Some(From::Member(m)) => point_of(z.score(m).ok_or("ERR could not decode requested zset member")?),
            None => return Ok(vec![]),
        };
        let Some((shape, per)) = s.shape else { return Ok(vec![]) };
        let meters = match shape {
            Shape::Radius(r) => Shape::Radius(r * per),
            Shape::Box { width, height } => Shape::Box {
                width: width * per,
                height: height * per,
            },
        };
        let mut found = find(z, meters, center, if s.any { s.count } else { 0 });
        match s.sort {
            Some(true) => found.sort_by(|x, y| x.dist.total_cmp(&y.dist)),
            Some(false) => found.sort_by(|x, y| y.dist.total_cmp(&x.dist)),
            None => {}
        }
        if s.count != 0 {
            found.truncate(s.count);
        }
        for f in &mut found {
            f.dist /= per;
        }
        Ok(found)
    };
    let Some(dst) = s.store.clone() else {
        // Without STORE the source is the first argument.
        return family::read(node, a, out, Kind::ZSet, Object::as_zset, |z| {
            let Some(z) = z else { return Frame::Array(vec![]) };
            match run(z) {
                Err(e) => Frame::error(e),
                Ok(found) => Frame::Array(found.iter().map(|f| item(&s, resp3, f)).collect()),
            }
        });
    };
    let result = node.write([&s.src[..], &dst[..]], |w| {
        let found = w.read_obj(&s.src, Kind::ZSet, |o| match o {
            Some(Object::ZSet(z)) => Some(run(z)),
            _ => None,
        });
        if w.failed() {
            return Frame::Null;
        }
        let found = match found {
            None => vec![],
            Some(Err(e)) => return Frame::error(e),
            Some(Ok(f)) => f,
        };
        let n = found.len();
        let mut z = ZSetObj::default();
        for f in &found {
            z.insert(&f.member, if s.store_dist { f.dist } else { f.score });
        }
        w.set_object(&dst, Object::ZSet(z), None);
        Frame::Integer(n as i64)
    });
    frame_reply(out, result)
}

fn item(s: &Search, resp3: bool, f: &Found) -> Frame {
    if !(s.with_dist || s.with_hash || s.with_coord) {
        return Frame::Bulk(f.member.clone());
    }
    let mut parts = vec![Frame::Bulk(f.member.clone())];
    if s.with_dist {
        parts.push(dist_frame(f.dist));
    }
    if s.with_hash {
        parts.push(Frame::Integer(f.score as i64));
    }
    if s.with_coord {
        parts.push(Frame::Array(vec![coord_frame(resp3, f.lon), coord_frame(resp3, f.lat)]));
    }
    Frame::Array(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_redis() {
        // From Redis's own geo tests ("Check geoset values").
        assert_eq!(score_of(-73.9454966, 40.747533), Some(1791875804419201.0));
        assert_eq!(score_of(-74.0131604, 40.7126674), Some(1791873972053020.0));
        assert_eq!(score_of(181.0, 0.0), None);
        let (lon, lat) = point_of(1791875804419201.0);
        assert!((lon + 73.9454966).abs() < 1e-5 && (lat - 40.747533).abs() < 1e-5);
    }

    #[test]
    fn distances_and_units() {
        // Palermo to Catania, as in Redis's documentation: 166274.1516 m.
        let (p, c) = (
            point_of(score_of(13.361389, 38.115556).unwrap()),
            point_of(score_of(15.087269, 37.502669).unwrap()),
        );
        assert_eq!(format!("{:.4}", distance(p.0, p.1, c.0, c.1)), "166274.1516");
        assert!(unit(b"KM").is_ok() && unit(b"yd").is_err());
    }
}
