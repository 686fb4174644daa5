//! `submit --spec job.toml` and `submit --print-spec`: a job (or a batch)
//! written down, so it can be repeated and kept in version control.
//!
//! Every key is optional; flags given on the command line win over the
//! file. Unknown keys are errors that name the key (`deny_unknown_fields`).
//! Relative paths are relative to the spec file's directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};

use super::Args;

/// The schema version this binary writes and reads.
pub const SPEC_VERSION: u32 = 1;

/// A job spec file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Schema version (1; absent = 1).
    #[serde(default = "version_one")]
    pub version: u32,
    /// The module: a path, or `builtin:NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// One input (a single job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Many inputs (a batch): files or directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<PathBuf>,
    /// Each line of each input is one job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lines: bool,
    /// The output file (one job) or directory (a batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<PathBuf>,
    /// Inputs in flight at once (a batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// Replicas per job; absent = the trust coordinator decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// The most paid per million fuel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_price: Option<u64>,
    /// Guest arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Limits of each job.
    #[serde(default)]
    pub limits: Limits,
    /// Where the hosts are.
    #[serde(default)]
    pub network: Network,
}

/// `[limits]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fuel budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Memory limit, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Time limit, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Canonical NaNs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portable: Option<bool>,
    /// Seconds a host may take before its job is placed elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u64>,
    /// Jobs placed again after a refusal, failure or disagreement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replacements: Option<usize>,
}

/// `[network]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Hosts (full multiaddrs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer: Vec<String>,
    /// Peers to find hosts through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap: Vec<String>,
    /// Do not look on the LAN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_mdns: Option<bool>,
    /// Swarm name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<String>,
    /// Seconds spent finding hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discover_secs: Option<u64>,
}

fn version_one() -> u32 {
    SPEC_VERSION
}

/// Reads a spec file; unknown keys and wrong types are errors naming them.
pub fn load(path: &Path) -> Result<SpecFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let spec: SpecFile =
        toml::from_str(&text).with_context(|| format!("bad job spec {}", path.display()))?;
    if spec.version != SPEC_VERSION {
        bail!(
            "job spec {} has version {}; this biop2p reads version {SPEC_VERSION}",
            path.display(),
            spec.version
        );
    }
    Ok(spec)
}

/// Whether a flag was given (on the command line or by its environment
/// variable) rather than left at its default.
fn given(m: Option<&ArgMatches>, id: &str) -> bool {
    m.and_then(|m| m.value_source(id))
        .is_some_and(|s| matches!(s, ValueSource::CommandLine | ValueSource::EnvVariable))
}

fn rel(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || base == Path::new(".") {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Fills every flag that was not given from the spec.
pub fn merge(a: &mut Args, m: Option<&ArgMatches>, spec: SpecFile, spec_path: &Path) -> Result<()> {
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    if a.file.is_none() {
        a.file = spec.module.map(|s| {
            if s.starts_with("builtin:") {
                s
            } else {
                rel(base, Path::new(&s)).to_string_lossy().into_owned()
            }
        });
    }
    if !given(m, "input") && a.inputs.is_empty() {
        a.input = spec.input.map(|s| {
            if s == "-" {
                s
            } else {
                rel(base, Path::new(&s)).to_string_lossy().into_owned()
            }
        });
    }
    if !given(m, "inputs") && a.input.is_none() {
        a.inputs = spec.inputs.iter().map(|p| rel(base, p)).collect();
    }
    if !given(m, "lines") {
        a.lines = spec.lines;
    }
    if !given(m, "output") {
        a.output = spec.output.map(|p| rel(base, &p)).or(a.output.take());
    }
    macro_rules! fill {
        ($id:literal, $field:expr, $val:expr) => {
            if !given(m, $id)
                && let Some(v) = $val
            {
                $field = v;
            }
        };
    }
    fill!("parallel", a.parallel, spec.parallel.map(Some));
    fill!("replicas", a.replicas, spec.replicas.map(Some));
    fill!("max_price", a.max_price, spec.max_price);
    fill!("fuel", a.fuel, spec.limits.fuel);
    fill!("memory", a.memory, spec.limits.memory);
    fill!("timeout", a.timeout, spec.limits.timeout_ms.map(Some));
    fill!("portable", a.portable, spec.limits.portable);
    fill!("deadline", a.deadline, spec.limits.deadline_secs.map(Some));
    fill!(
        "max_replacements",
        a.max_replacements,
        spec.limits.max_replacements
    );
    fill!("no_mdns", a.no_mdns, spec.network.no_mdns);
    fill!("swarm", a.swarm, spec.network.swarm);
    fill!("discover_secs", a.discover_secs, spec.network.discover_secs);
    if !given(m, "peer") && !spec.network.peer.is_empty() {
        a.peer = parse_addrs(&spec.network.peer, "peer")?;
    }
    if !given(m, "bootstrap") && !spec.network.bootstrap.is_empty() {
        a.bootstrap = parse_addrs(&spec.network.bootstrap, "bootstrap")?;
    }
    if !given(m, "args") && !spec.args.is_empty() {
        a.args = spec.args;
    }
    Ok(())
}

fn parse_addrs(v: &[String], key: &str) -> Result<Vec<libp2p::Multiaddr>> {
    v.iter()
        .map(|s| {
            s.parse()
                .with_context(|| format!("network.{key}: {s:?} is not a multiaddr"))
        })
        .collect()
}

/// The spec the (merged) command line means, every value written out.
pub fn of_args(a: &Args) -> SpecFile {
    SpecFile {
        version: SPEC_VERSION,
        module: a.file.clone(),
        input: a.input.clone(),
        inputs: a.inputs.clone(),
        lines: a.lines,
        output: a.output.clone(),
        parallel: a.parallel,
        replicas: a.replicas,
        max_price: Some(a.max_price),
        args: a.args.clone(),
        limits: Limits {
            fuel: Some(a.fuel),
            memory: Some(a.memory),
            timeout_ms: a.timeout,
            portable: Some(a.portable),
            deadline_secs: a.deadline,
            max_replacements: Some(a.max_replacements),
        },
        network: Network {
            peer: a.peer.iter().map(|p| p.to_string()).collect(),
            bootstrap: a.bootstrap.iter().map(|p| p.to_string()).collect(),
            no_mdns: Some(a.no_mdns),
            swarm: Some(a.swarm.clone()),
            discover_secs: Some(a.discover_secs),
        },
    }
}

/// The spec as TOML text.
pub fn to_text(s: &SpecFile) -> String {
    format!(
        "# biop2p job spec (biop2p submit --spec FILE); flags given on the command line win.\n{}",
        toml::to_string(s).expect("a spec encodes")
    )
}
