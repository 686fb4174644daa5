//! Builds the guest workloads in `workloads/` from source for wasm and hands
//! their paths to the host crate, which embeds them (so `biop2p bench` and
//! `biop2p demo` need no file beside the binary).
//!
//! The nested cargo uses its own target directory (beside the outer one) so
//! the two builds never wait on each other's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, target, artifact file name, extra rustflags)
const WORKLOADS: &[(&str, &str, &str, &str)] = &[
    ("wl-echo", "wasm32-wasip2", "wl_echo.wasm", ""),
    ("wl-sleep", "wasm32-wasip2", "wl_sleep.wasm", ""),
    (
        "wl-tensor-probe",
        "wasm32-wasip2",
        "wl_tensor_probe.wasm",
        "",
    ),
    (
        "wl-matmul",
        "wasm32-wasip2",
        "wl_matmul.wasm",
        "-Ctarget-feature=+simd128",
    ),
    (
        "wl-mlp",
        "wasm32-wasip2",
        "wl_mlp.wasm",
        "-Ctarget-feature=+simd128",
    ),
    (
        "wl-digits",
        "wasm32-wasip2",
        "wl_digits.wasm",
        "-Ctarget-feature=+simd128",
    ),
    (
        "wl-embed",
        "wasm32-wasip2",
        "wl_embed.wasm",
        "-Ctarget-feature=+simd128",
    ),
    ("wl-echo-p1", "wasm32-wasip1", "wl-echo-p1.wasm", ""),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = manifest_dir.parent().expect("workspace root").to_path_buf();
    for dir in ["workloads", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-env-changed=BIOP2P_GUEST_TOOLCHAIN");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: put the wasm
    // builds in <target>/wasm-workloads so they are reused between builds.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|p| p.join("wasm-workloads"))
        .unwrap_or_else(|| out_dir.join("wasm-workloads"));

    // One cargo call per (target, rustflags) group.
    let mut groups: Vec<(&str, &str)> = WORKLOADS.iter().map(|w| (w.1, w.3)).collect();
    groups.dedup();
    for (target, flags) in groups {
        let pkgs: Vec<&str> = WORKLOADS
            .iter()
            .filter(|w| w.1 == target && w.3 == flags)
            .map(|w| w.0)
            .collect();
        build(&root, &target_dir, target, flags, &pkgs);
    }
    for (pkg, target, file, flags) in WORKLOADS {
        let sub = if flags.is_empty() { "plain" } else { "simd" };
        let path = target_dir.join(sub).join(target).join("release").join(file);
        assert!(
            path.exists(),
            "workload {pkg} was built but {} is missing",
            path.display()
        );
        let var = format!("BIOP2P_WASM_{}", pkg.to_uppercase().replace('-', "_"));
        println!("cargo:rustc-env={var}={}", path.display());
    }
}

fn build(root: &Path, target_dir: &Path, target: &str, flags: &str, pkgs: &[&str]) {
    let sub = if flags.is_empty() { "plain" } else { "simd" };
    // `BIOP2P_GUEST_TOOLCHAIN=1.95.0` builds the guests with that toolchain
    // instead of the outer build's: `cargo +nightly fuzz` builds the host
    // with a nightly that may lack the wasm targets.
    let mut cmd = match std::env::var("BIOP2P_GUEST_TOOLCHAIN") {
        Ok(tc) if !tc.is_empty() => {
            let mut c = Command::new("rustup");
            c.args(["run", &tc, "cargo"]);
            for var in [
                "RUSTC",
                "RUSTDOC",
                "RUSTUP_TOOLCHAIN",
                "CARGO",
                "RUSTC_BOOTSTRAP",
            ] {
                c.env_remove(var);
            }
            c
        }
        _ => Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
    };
    cmd.current_dir(root)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target)
        .arg("--target-dir")
        .arg(target_dir.join(sub));
    for p in pkgs {
        cmd.arg("-p").arg(p);
    }
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags)
        // Small, fast-to-compile guests: no debug info in the wasm.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    let status = cmd.status().expect("run cargo for the guest workloads");
    if !status.success() {
        panic!(
            "building the guest workloads {pkgs:?} for {target} failed. \
             Is the target installed? Run: rustup target add wasm32-wasip2 wasm32-wasip1"
        );
    }
}
