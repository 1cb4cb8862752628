//! `outpost-vmm` binary: parses arguments and hands over to the library.
//! (Temporary runner until the CLI lands: `outpost-vmm CONFIG.json`.)
fn main() {
    let _ = outpost_vmm::PROCESS_START.set(std::time::Instant::now());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("OUTPOST_LOG"))
        .init();
    let path = std::env::args().nth(1).expect("config path");
    let cfg: outpost_vmm::config::VmConfig =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    match outpost_vmm::builder::start(&cfg) {
        Ok(vm) => {
            let r = vm.exit_waiter().wait();
            eprintln!("exit: {r:?}");
            std::process::exit(r.exit_code());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
