//! `outpost-vmm` binary: parses arguments and hands over to the library.
fn main() {
    std::process::exit(outpost_vmm::EXIT_ERROR);
}
