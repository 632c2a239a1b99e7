//! `INFO`'s shape, shared by gates and servers: which sections a request asks for, in
//! Redis's order, and the sections every process reports the same way (`cpu`).

use std::fmt::Write as _;

/// The sections `INFO` prints with no argument (or `default`), in Redis's order.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];

/// Which sections a list of `INFO` arguments asks for: section names, `default`, `all`
/// (default plus `commandstats` and `latencystats`) or `everything`.
pub fn sections(args: &[String]) -> Vec<&'static str> {
    const EXTRA: &[&str] = &["commandstats", "latencystats"];
    let mut wanted: Vec<&'static str> = Vec::new();
    let mut add = |s: &'static str| {
        if !wanted.contains(&s) {
            wanted.push(s);
        }
    };
    if args.is_empty() {
        DEFAULT_SECTIONS.iter().for_each(|s| add(s));
    }
    for a in args {
        match a.as_str() {
            "default" => DEFAULT_SECTIONS.iter().for_each(|s| add(s)),
            "all" | "everything" => DEFAULT_SECTIONS.iter().chain(EXTRA).for_each(|s| add(s)),
            other => {
                if let Some(s) = DEFAULT_SECTIONS.iter().chain(EXTRA).find(|s| **s == other) {
                    add(s);
                }
            }
        }
    }
    wanted
}

/// This process's CPU time (user, system) and its children's, in seconds.
fn cpu_times() -> [f64; 4] {
    let usage = |who| {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (secs(u.ru_utime), secs(u.ru_stime))
    };
    let (user, sys) = usage(libc::RUSAGE_SELF);
    let (cuser, csys) = usage(libc::RUSAGE_CHILDREN);
    [sys, user, csys, cuser]
}

/// Appends the `# CPU` section.
pub fn cpu(out: &mut String) {
    let [sys, user, csys, cuser] = cpu_times();
    let _ = write!(
        out,
        "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:{csys:.6}\r\n\
         used_cpu_user_children:{cuser:.6}\r\n\r\n"
    );
}

#[cfg(test)]
mod tests {
    use super::sections;

    #[test]
    fn sections_as_redis_picks_them() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(sections(&[]).len(), 11);
        assert!(!sections(&[]).contains(&"commandstats"));
        assert_eq!(sections(&args(&["cpu", "sentinel"])), ["cpu"]);
        let all = sections(&args(&["cpu", "all"]));
        assert!(all.contains(&"commandstats") && all.iter().filter(|s| **s == "cpu").count() == 1);
        assert_eq!(sections(&args(&["commandstats"])), ["commandstats"]);
    }
}
