//! `-z nodelete`: cudarc probes for libcuda with dlopen + dlclose and later dlopens it again.
//! Simulator worker threads and thread-locals must never see their code unmapped, so the
//! library stays resident once loaded, as the real driver effectively does.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
