//! `biop2p new NAME`: a workload crate from the guest SDK that builds and
//! runs as it is.
//!
//! The SDK is a path dependency: `--sdk PATH`, else `$BIOP2P_GUEST_SDK`,
//! else the `guest-sdk/` of the checkout this binary was built from (its
//! location is compiled in). The crate is its own workspace (an empty
//! `[workspace]`), so it builds inside this repository as well as outside
//! it, and it starts from this repository's `Cargo.lock`, so the versions
//! it resolves are ones already known to build (offline too, once fetched).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::common;

/// The guest SDK of the checkout this binary was built from.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");
/// The lock file the template starts from.
const LOCK: &str = include_str!("../../../Cargo.lock");

/// Create a workload crate from the guest SDK.
#[derive(clap::Args)]
pub struct Args {
    /// Crate name (letters, digits, `-`, `_`; starting with a letter).
    name: String,
    /// Directory to create (default: ./NAME).
    #[arg(long)]
    path: Option<PathBuf>,
    /// The guest SDK (`guest-sdk/` of a biop2p checkout).
    #[arg(long, env = "BIOP2P_GUEST_SDK")]
    sdk: Option<PathBuf>,
    /// One JSON line: the directory, the files, and the build and run
    /// commands.
    #[arg(long)]
    json: bool,
}

fn valid_name(n: &str) -> bool {
    n.len() <= 64
        && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The SDK directory, checked: it must hold the `biop2p-guest` crate.
fn find_sdk(flag: Option<PathBuf>) -> Result<PathBuf> {
    let (dir, from) = match flag {
        Some(d) => (d, "--sdk"),
        None => (
            PathBuf::from(BUILT_SDK),
            "the checkout this biop2p was built from",
        ),
    };
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "no guest SDK at {} ({from}); give --sdk PATH to the guest-sdk/ directory of a biop2p checkout",
            dir.display()
        )
    })?;
    if !text.contains("name = \"biop2p-guest\"") {
        bail!(
            "{} is not the biop2p-guest crate; give --sdk PATH to guest-sdk/",
            manifest.display()
        );
    }
    Ok(std::fs::canonicalize(&dir)?)
}

/// The files of the template, relative to its directory.
pub fn files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let lib = name.replace('-', "_");
    let sdk = sdk.display().to_string().replace('\\', "/");
    vec![
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the wasm component a host runs; rlib: `cargo test` natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The biop2p guest SDK, where `biop2p new` found it. Elsewhere, point this
# at the guest-sdk/ directory of a biop2p checkout.
biop2p-guest = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = "s"
strip = true

# Its own workspace, so it builds inside another one too.
[workspace]
"#
            ),
        ),
        (
            "src/lib.rs",
            r##"//! A biop2p workload: counts the words, lines and bytes of a text.
//!
//! Input: JSON `{"text": "..."}` (empty input counts an empty text).
//! Output: JSON `{"words": N, "lines": N, "bytes": N}`.

use serde::{Deserialize, Serialize};

/// What the workload reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Input {
    /// The text to count.
    pub text: String,
}

/// What it returns.
#[derive(Debug, PartialEq, Serialize)]
pub struct Output {
    /// Whitespace-separated words.
    pub words: usize,
    /// Lines (a last line without a newline counts).
    pub lines: usize,
    /// Bytes of the text.
    pub bytes: usize,
}

/// The work itself: a pure function, testable natively.
pub fn count(input: Input) -> Result<Output, String> {
    biop2p_guest::progress(1.0);
    Ok(Output {
        words: input.text.split_whitespace().count(),
        lines: input.text.lines().count(),
        bytes: input.text.len(),
    })
}

biop2p_guest::json_workload!(count);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_lines_and_bytes() {
        let out = count(Input {
            text: "the quick brown\nfox".into(),
        })
        .unwrap();
        assert_eq!(
            out,
            Output {
                words: 4,
                lines: 2,
                bytes: 19
            }
        );
    }

    #[test]
    fn json_in_json_out() {
        let out = biop2p_guest::json::call(br#"{"text": "a b"}"#, count).unwrap();
        assert_eq!(out, br#"{"words":2,"lines":1,"bytes":3}"#);
    }
}
"##
            .to_string(),
        ),
        (
            "README.md",
            format!(
                r#"# {name}

A biop2p workload made by `biop2p new`: it counts the words, lines and
bytes of a JSON text (`src/lib.rs`).

```sh
rustup target add wasm32-wasip2            # once
cargo test                                 # the unit tests, natively
cargo build --release --target wasm32-wasip2
echo '{{"text": "the quick brown fox"}}' > input.json
biop2p run target/wasm32-wasip2/release/{lib}.wasm --input input.json
# {{"words":4,"lines":1,"bytes":19}}
biop2p submit target/wasm32-wasip2/release/{lib}.wasm --input input.json   # on the swarm
```

The guest SDK is a path dependency in `Cargo.toml` (`{sdk}`); if you move
this crate to another machine, point it at the `guest-sdk/` directory of a
biop2p checkout.
"#
            ),
        ),
        (".gitignore", "/target\n".to_string()),
        ("Cargo.lock", LOCK.to_string()),
    ]
}

pub fn execute(a: Args) -> Result<ExitCode> {
    if !valid_name(&a.name) {
        bail!(
            "{:?} is not a crate name: use letters, digits, `-` and `_`, starting with a letter",
            a.name
        );
    }
    let dir = a.path.clone().unwrap_or_else(|| PathBuf::from(&a.name));
    if dir.exists() && std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_some()) {
        bail!(
            "{} already exists and is not empty; nothing was written",
            dir.display()
        );
    }
    let sdk = find_sdk(a.sdk)?;
    let files = files(&a.name, &sdk);
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (rel, text) in &files {
        let p = dir.join(rel);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let wasm = format!(
        "target/wasm32-wasip2/release/{}.wasm",
        a.name.replace('-', "_")
    );
    let build = "cargo build --release --target wasm32-wasip2".to_string();
    let run = format!("biop2p run {wasm} --input input.json");
    if a.json {
        common::print_line(
            &serde_json::json!({
                "dir": dir,
                "name": a.name,
                "sdk": sdk,
                "files": files.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
                "wasm": wasm,
                "build": build,
                "run": run,
            })
            .to_string(),
        )?;
    } else {
        common::print_line(&format!(
            "created {} (guest SDK {})\n  cd {}\n  {build}\n  {run}",
            dir.display(),
            sdk.display(),
            dir.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
