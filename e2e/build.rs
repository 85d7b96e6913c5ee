//! The one way a test of this package skips: a test that needs something this machine lacks
//! is marked ignored by a cfg set here, so it shows as "ignored", never as "ok" without
//! running. With `INVENTORY_REQUIRE_BACKENDS` set (as in CI) a missing one fails the build
//! instead, naming it.
fn main() {
    let require = std::env::var_os("INVENTORY_REQUIRE_BACKENDS").is_some();
    println!("cargo:rerun-if-env-changed=INVENTORY_REQUIRE_BACKENDS");
    for (var, cfg) in [
        ("INVENTORY_TEST_POSTGRES_URL", "inventory_no_postgres"),
        ("FIRESTORE_EMULATOR_HOST", "inventory_no_firestore"),
        ("PUBSUB_EMULATOR_HOST", "inventory_no_pubsub"),
        ("INVENTORY_TEST_SCHEMATHESIS", "inventory_no_schemathesis"),
        ("INVENTORY_TEST_CHROMIUM", "inventory_no_chromium"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo:rerun-if-env-changed={var}");
        if std::env::var(var).map_or(true, |v| v.is_empty()) {
            assert!(
                !require,
                "INVENTORY_REQUIRE_BACKENDS is set but {var} is not"
            );
            println!("cargo:rustc-cfg={cfg}");
        }
    }
    // Mounting a tmpfs (the full-disk test) needs root.
    println!("cargo::rustc-check-cfg=cfg(inventory_no_root)");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        assert!(
            !require,
            "INVENTORY_REQUIRE_BACKENDS is set but the tests do not run as root"
        );
        println!("cargo:rustc-cfg=inventory_no_root");
    }
}
