use which::which;

/// The object is linked by `bpf-linker`, which cargo does not know about: rebuild when it changes.
/// A missing linker is reported by `cargo xtask setup`, which installs it.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found; run `cargo xtask setup`"),
    }
}
