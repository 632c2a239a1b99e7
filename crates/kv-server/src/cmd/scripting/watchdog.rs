//! Stopping a script that runs too long, in every coroutine it starts and through every
//! `pcall` it hides in.
//!
//! A count hook on the interpreter checks the running script's limit every
//! [`CHECK_EVERY`] instructions. Three things make it hold where a plain hook does not:
//! - **It is a raw Lua hook set on the main thread**, not `mlua`'s: Lua 5.1 copies a thread's
//!   hook to the coroutines it creates, while `mlua`'s hook ignores (and clears) itself on
//!   any thread but the one it was set on, so `coroutine.wrap(function() while true do end
//!   end)()` once spun forever.
//! - **Once stopped, it fires on every instruction**, as Redis's does (`LUA_MASKLINE` after a
//!   kill): `pcall` catches the error, but the next instruction outside it raises again, so
//!   `while true do pcall(f) end` ends instead of catching one error per 10,000
//!   instructions for ever.
//! - **What to check lives in a thread-local** set for the run ([`watch`]): a script runs
//!   synchronously on the thread that holds the interpreter, so the hook reads it without a
//!   lock, and outside a run it does nothing.
//!
//! A kvserver serves its clients from as few as one thread, which a running script holds:
//! a script that never ended cost its server its ZooKeeper session and its shard its leader
//! (Redis's suite's `pcall` loop did this to both replicas of a shard in turn).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mlua::{Lua, ffi};

/// Instructions between two checks while a script runs within its limit.
const CHECK_EVERY: i32 = 10_000;

/// The longest stop message (longer ones are cut).
const MAX_MESSAGE: usize = 160;

/// What stops the running script, and whether it has been stopped.
struct Watch {
    deadline: Instant,
    timed_out: String,
    kill: Option<(Arc<AtomicBool>, &'static str)>,
    stopped: Option<String>,
}

thread_local! {
    static WATCH: RefCell<Option<Watch>> = const { RefCell::new(None) };
}

/// Sets the hook on `lua`'s main thread, once, when the interpreter is made: every thread a
/// script creates later inherits it.
pub fn install(lua: &Lua) {
    // SAFETY: `lua_sethook` only stores the hook and its mask in the state.
    let set = unsafe {
        lua.exec_raw::<()>((), |state| {
            ffi::lua_sethook(state, Some(hook), ffi::LUA_MASKCOUNT, CHECK_EVERY);
        })
    };
    set.expect("setting a hook cannot fail");
}

/// Watches the script run on this thread until the guard is dropped: it fails with
/// `timed_out` once `deadline` passes, or with `killed` once `kill` is set.
pub fn watch(deadline: Instant, timed_out: String, kill: Option<(Arc<AtomicBool>, &'static str)>) -> Guard {
    WATCH.with_borrow_mut(|w| {
        *w = Some(Watch {
            deadline,
            timed_out,
            kill,
            stopped: None,
        })
    });
    Guard(())
}

/// Ends a [`watch`].
#[must_use = "the watch ends when the guard is dropped"]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        WATCH.with_borrow_mut(|w| *w = None);
    }
}

/// Why the watched script was stopped, if it was (for `redis.call` after a stop).
pub fn stopped() -> Option<String> {
    WATCH.with_borrow(|w| w.as_ref().and_then(|w| w.stopped.clone()))
}

/// The stop message to raise, copied into `buf` (its length), or `None` to go on.
fn check(buf: &mut [u8; MAX_MESSAGE]) -> Option<usize> {
    WATCH.with_borrow_mut(|w| {
        let w = w.as_mut()?;
        if w.stopped.is_none() {
            let killed = w.kill.as_ref().filter(|(flag, _)| flag.load(Ordering::Relaxed));
            if let Some((_, text)) = killed {
                w.stopped = Some(text.to_string());
            } else if Instant::now() >= w.deadline {
                w.stopped = Some(w.timed_out.clone());
            } else {
                return None;
            }
        }
        let text = w.stopped.as_deref().unwrap_or_default().as_bytes();
        let n = text.len().min(MAX_MESSAGE);
        buf[..n].copy_from_slice(&text[..n]);
        Some(n)
    })
}

/// The hook. It raises with `lua_error`, which unwinds by `longjmp`: nothing with a
/// destructor is alive in this frame when it does (the message is on the stack).
unsafe extern "C-unwind" fn hook(state: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    let mut buf = [0u8; MAX_MESSAGE];
    // SAFETY: `state` is the thread the hook fired on; a hook may reset its own thread's
    // hook and raise an error (Redis's does both).
    unsafe {
        match check(&mut buf) {
            None => {
                // Back to the usual pace on a thread a stopped script left at every
                // instruction.
                if ffi::lua_gethookcount(state) != CHECK_EVERY {
                    ffi::lua_sethook(state, Some(hook), ffi::LUA_MASKCOUNT, CHECK_EVERY);
                }
            }
            Some(n) => {
                ffi::lua_sethook(state, Some(hook), ffi::LUA_MASKCOUNT, 1);
                ffi::lua_pushlstring(state, buf.as_ptr().cast(), n);
                ffi::lua_error(state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(lua: &Lua, code: &str, limit: Duration) -> Result<(), String> {
        let _w = watch(Instant::now() + limit, "stopped: too long".into(), None);
        lua.load(code).exec().map_err(|e| e.to_string())
    }

    fn interpreter() -> Lua {
        let lua = Lua::new();
        install(&lua);
        lua
    }

    #[test]
    fn a_loop_is_stopped_at_its_limit() {
        let lua = interpreter();
        let started = Instant::now();
        let e = run(&lua, "while true do end", Duration::from_millis(50)).unwrap_err();
        assert!(e.contains("stopped: too long"), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    /// `code`, which would never end by itself, is ended by the watch.
    fn assert_stopped(lua: &Lua, code: &str) {
        let e = run(lua, code, Duration::from_millis(50)).unwrap_err();
        assert!(e.contains("stopped: too long"), "{code}: {e}");
    }

    #[test]
    fn pcall_cannot_keep_a_stopped_script_running() {
        let lua = interpreter();
        assert_stopped(
            &lua,
            "local f = function() while true do end end while true do pcall(f) end",
        );
        // Nested protection, and xpcall, end the same way.
        assert_stopped(
            &lua,
            "local f = function() while true do end end \
             while true do pcall(function() while true do xpcall(f, function(e) return e end) end end) end",
        );
    }

    #[test]
    fn a_coroutine_is_stopped_too() {
        let lua = interpreter();
        assert_stopped(&lua, "local co = coroutine.wrap(function() while true do end end) co()");
        // A coroutine's error caught by resume does not save the loop around it either.
        assert_stopped(
            &lua,
            "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        );
    }

    #[test]
    fn a_stop_ends_with_its_script_and_unwatched_code_runs_on() {
        let lua = interpreter();
        assert!(run(&lua, "while true do end", Duration::from_millis(10)).is_err());
        assert_eq!(
            run(
                &lua,
                "local i = 0 for _ = 1, 100000 do i = i + 1 end",
                Duration::from_secs(60)
            ),
            Ok(())
        );
        lua.load("for _ = 1, 100000 do end").exec().unwrap();
    }

    #[test]
    fn a_kill_stops_the_script() {
        let lua = interpreter();
        let kill = Arc::new(AtomicBool::new(true));
        let _w = watch(
            Instant::now() + Duration::from_secs(60),
            "too long".into(),
            Some((kill, "killed")),
        );
        let e = lua.load("while true do end").exec().unwrap_err().to_string();
        assert!(e.contains("killed"), "{e}");
        assert_eq!(stopped().as_deref(), Some("killed"));
    }
}
