//! kvctl: the kvstore command-line client.

fn main() -> std::process::ExitCode {
    kv_ctl::main()
}
