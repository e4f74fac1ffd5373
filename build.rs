fn main() {
    // Migrations are embedded with sqlx::migrate!; rebuild when they change.
    println!("cargo:rerun-if-changed=migrations");
    link_startup_code_first();
}

/// Release builds of the `firebell` binary put the functions a running bot executes first in
/// `.text` (the list and how it is made: `link/startup-order.sh`), so they share a few MB of
/// pages instead of touching nearly every page of the binary's code, and pack its relocations.
/// Only where the linker is LLD, Rust's default on x86_64 Linux since 1.90;
/// `FIREBELL_NO_LINK_ORDER=1` turns both off for a build with another linker.
fn link_startup_code_first() {
    println!("cargo:rerun-if-changed=link/startup-order.txt");
    println!("cargo:rerun-if-env-changed=FIREBELL_NO_LINK_ORDER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let disabled = std::env::var_os("FIREBELL_NO_LINK_ORDER").is_some_and(|value| value != "0");
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("link/startup-order.txt");
    if target != "x86_64-unknown-linux-gnu" || !release || disabled {
        return;
    }
    if order.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    // Relative relocations packed (DT_RELR): the loader reads a few KB at start instead of the
    // 2 MB `.rela.dyn` table, which stayed mapped. Only when this glibc can load them (2.36+);
    // the binary then needs such a glibc to run, as it needs its other symbol versions.
    let native = std::env::var("HOST").is_ok_and(|host| host == target);
    if native && glibc_loads_packed_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C library the binary links against defines `GLIBC_ABI_DT_RELR`.
fn glibc_loads_packed_relocations() -> bool {
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib64/libc.so.6",
    ]
    .iter()
    .filter_map(|path| std::fs::read(path).ok())
    .any(|library| library.windows(17).any(|window| window == b"GLIBC_ABI_DT_RELR"))
}
