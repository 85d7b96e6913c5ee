//! Marks the emulator tests ignored when no emulator is configured, so they never report "ok"
//! without running.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(inventory_no_firestore)");
    println!("cargo:rerun-if-env-changed=FIRESTORE_EMULATOR_HOST");
    if std::env::var("FIRESTORE_EMULATOR_HOST").map_or(true, |v| v.is_empty()) {
        println!("cargo:rustc-cfg=inventory_no_firestore");
    }
}
