//! What a script may reach, as Redis 7.0 sets it up: the base, `table`, `string` and `math`
//! libraries and Redis's own (`redis`, `cjson`, `cmsgpack`, `bit`, `struct`); no `io`, `os`,
//! `package`, `loadfile`, `dofile` or `print` (a script must not touch the server's files
//! or processes). Globals are read-only: a script runs in an environment table that refuses
//! new globals ("Attempt to modify a readonly table") and reports a read of an undeclared
//! one, and each library table is a read-only view, so one script cannot change what the
//! next one sees.
//!
//! Redis patches its Lua with read-only tables; stock Lua 5.1 has none, so the same
//! behaviour is built from proxies (empty tables whose metatable reads through to the real
//! one and refuses writes) and from `setmetatable`/`rawset` refusing the proxies.

use mlua::{Lua, LuaOptions, StdLib, Table};

/// Sets up the sandbox in the interpreter's real globals; the script environment, kept in
/// the registry, is what [`environment`] returns.
const SETUP: &str = r#"
local real = _G
local rawget, error, tostring = rawget, error, tostring
local raw_setmetatable, raw_rawset = setmetatable, rawset
local protected = raw_setmetatable({}, {__mode = "k"})
local function deny() error("Attempt to modify a readonly table", 2) end
local function guard(proxy, mt)
  local shown = raw_setmetatable({}, {__index = mt, __newindex = deny, __metatable = false})
  mt.__metatable = shown
  protected[proxy] = true
  protected[shown] = true
  return raw_setmetatable(proxy, mt)
end
for _, name in ipairs({"redis", "cjson", "cmsgpack", "bit", "struct", "string", "table", "math", "coroutine"}) do
  local t = real[name]
  if type(t) == "table" then
    real[name] = guard({}, {__index = t, __newindex = deny})
  end
end
-- Reads go through to the real globals table (a lookup in C, no Lua call per global), whose
-- own metatable reports a global that does not exist.
local env = guard({}, {__index = real, __newindex = deny})
real._G = env
real.setmetatable = function(t, m)
  if protected[t] then deny() end
  return raw_setmetatable(t, m)
end
real.rawset = function(t, k, v)
  if protected[t] then deny() end
  return raw_rawset(t, k, v)
end
-- Compiled code (string.dump's output) is refused, as Redis refuses it.
local raw_loadstring = loadstring
real.loadstring = function(s, name)
  if type(s) == "string" and s:byte(1) == 27 then return nil, "binary code is not loaded" end
  return raw_loadstring(s, name)
end
real.load = nil
real.loadfile = nil
real.dofile = nil
real.print = nil
real.module = nil
real.require = nil
real.newproxy = nil
raw_setmetatable(real, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
})
return env
"#;

/// A new interpreter with only the libraries Redis gives scripts.
pub fn new_interpreter() -> Lua {
    Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::default())
        .expect("the standard Lua libraries load")
}

/// Locks the interpreter down once its libraries (and `redis`) are in its globals.
pub fn seal(lua: &Lua) -> mlua::Result<()> {
    let env: Table = lua.load(SETUP).set_name("@sandbox").eval()?;
    lua.set_named_registry_value("script_env", env)
}

/// The environment scripts and function libraries run in.
pub fn environment(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value("script_env")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lua: &Lua, code: &str) -> Result<mlua::Value, String> {
        lua.load(code)
            .set_environment(environment(lua).unwrap())
            .eval()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn globals_and_libraries_are_read_only() {
        let lua = new_interpreter();
        lua.globals().set("redis", lua.create_table().unwrap()).unwrap();
        seal(&lua).unwrap();
        for code in [
            "a = 10",
            "_G = {}",
            "redis = 1",
            "redis.call = 1",
            "string.rep = nil",
            "setmetatable(_G, {})",
            "getmetatable(_G).__index = {}",
            "rawset(_G, 'x', 1)",
        ] {
            let e = run(&lua, code).unwrap_err();
            assert!(e.contains("Attempt to modify a readonly table"), "{code}: {e}");
        }
        let e = run(&lua, "return a").unwrap_err();
        assert!(
            e.contains("Script attempted to access nonexistent global variable 'a'"),
            "{e}"
        );
        for name in ["print", "loadfile", "dofile", "io", "os", "require"] {
            let e = run(&lua, &format!("return {name}")).unwrap_err();
            assert!(e.contains("nonexistent global"), "{name}: {e}");
        }
        assert!(run(&lua, "return loadstring(string.dump(function() return 1 end))").is_ok_and(|v| v.is_nil()));
        assert_eq!(
            run(&lua, "local t = {} setmetatable(t, {}) return string.rep('x', 3)")
                .unwrap()
                .as_str()
                .unwrap(),
            "xxx"
        );
    }
}
