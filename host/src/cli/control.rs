//! `biop2p pause`, `biop2p resume` and `biop2p policy`: the volunteer's
//! controls from a terminal. They are the page's own API (`POST
//! /api/pause`, `/api/resume`, `GET|POST /api/policy`) with the token from
//! `DATA_DIR/http.token`, so the terminal and the page share one control
//! path and one guard.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::common;

/// Where the host is and how to reach its controls.
#[derive(clap::Args)]
pub struct Target {
    /// The host's data directory (its `http.token` and `http.addr`).
    #[arg(long, env = "BIOP2P_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The page's address (default: the one the host wrote to
    /// DATA_DIR/http.addr when it started).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// Change the resource policy of the running host (or print it).
#[derive(clap::Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    target: Target,
    /// `KEY=VALUE` of the `[policy]` table (repeatable), e.g.
    /// `--set duty_cycle=0.5 --set max_load_avg=1.5`. Without it, the
    /// policy in force is printed.
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// The page's base URL and the token.
struct Host {
    base: String,
    token: String,
}

impl Target {
    fn resolve(&self) -> Result<Host> {
        let dir = common::data_dir(self.data_dir.clone())?;
        let token = read(&dir, biop2p::http::token::TOKEN_FILE)?;
        let addr = match self.http {
            Some(a) => a.to_string(),
            None => read(&dir, biop2p::http::ADDR_FILE)?,
        };
        Ok(Host {
            base: format!("http://{addr}"),
            token,
        })
    }
}

fn read(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    let s = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: is a host with its status page (`biop2p host --http ADDR` or \
             `[http] listen`) using this data dir? (--data-dir)",
            path.display()
        )
    })?;
    Ok(s.trim().to_string())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends one request; the answer's JSON, or the host's message as the error.
fn call(host: &Host, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let url = format!("{}{path}", host.base);
    let auth = format!("Bearer {}", host.token);
    let a = agent();
    let res = match (method, body) {
        ("GET", _) => a.get(&url).header("Authorization", &auth).call(),
        (_, Some(b)) => a
            .post(&url)
            .header("Authorization", &auth)
            .content_type("application/json")
            .send(b.to_string()),
        (_, None) => a.post(&url).header("Authorization", &auth).send_empty(),
    };
    let mut res = res.with_context(|| format!("no host answers at {url}; is it running?"))?;
    let status = res.status().as_u16();
    let text = res
        .body_mut()
        .read_to_string()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    if status != 200 {
        bail!("{url}: {status}: {}", text.trim());
    }
    serde_json::from_str(&text).with_context(|| format!("{url}: not JSON: {text}"))
}

/// GETs `path` from the page of the host using `data_dir` (its token and
/// address files), with the token.
pub fn host_get(data_dir: Option<PathBuf>, path: &str) -> Result<Value> {
    let host = Target {
        data_dir,
        http: None,
        json: true,
    }
    .resolve()?;
    call(&host, "GET", path, None)
}

/// `biop2p pause` (`paused` true) or `biop2p resume`.
pub fn pause(t: Target, paused: bool) -> Result<ExitCode> {
    let host = t.resolve()?;
    let path = if paused { "/api/pause" } else { "/api/resume" };
    let answer = call(&host, "POST", path, None)?;
    let state = answer["state"].as_str().unwrap_or("unknown");
    if t.json {
        println!(
            "{}",
            serde_json::json!({ "paused": paused, "state": state })
        );
    } else if paused {
        println!("paused: no new work is taken; running tasks finish (state: {state})");
    } else {
        println!("resumed (state: {state})");
    }
    Ok(ExitCode::SUCCESS)
}

/// `biop2p policy [--set KEY=VALUE]...`.
pub fn policy(a: PolicyArgs) -> Result<ExitCode> {
    let host = a.target.resolve()?;
    let mut policy = call(&host, "GET", "/api/policy", None)?;
    if !a.set.is_empty() {
        let table = policy
            .as_object_mut()
            .context("the host's policy is not a JSON object")?;
        for kv in &a.set {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
            let Some(old) = table.get(k) else {
                let keys: Vec<&String> = table.keys().collect();
                bail!("--set {k}: no such policy key; the keys are {keys:?}");
            };
            // Typed like the value in force, so `true`, `0.5` and `3` parse.
            let new = match old {
                Value::String(_) => Value::String(v.to_string()),
                _ => serde_json::from_str(v)
                    .with_context(|| format!("--set {k}={v}: not a valid value"))?,
            };
            table.insert(k.to_string(), new);
        }
        policy = call(&host, "POST", "/api/policy", Some(&policy))?;
    }
    if a.target.json {
        println!("{policy}");
    } else if let Some(table) = policy.as_object() {
        for (k, v) in table {
            println!("{k} = {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
