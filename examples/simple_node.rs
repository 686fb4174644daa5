//! One host node with the Young role: prints its peer id and addresses and
//! serves jobs until Ctrl-C (or for `--for SECS`).
//!
//! ```text
//! cargo run --release -p biop2p --example simple_node -- [--for SECS] [--data-dir DIR]
//! ```
//!
//! It uses the configuration's defaults (ports 7450/7451, mDNS on), so
//! `biop2p submit builtin:echo --input FILE` on the same LAN finds it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use biop2p::{BiologicalRole, Node, NodeConfig};

#[tokio::main]
async fn main() -> Result<()> {
    let mut run_for = None;
    let mut data_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--for" => {
                let secs: f64 = args.next().context("--for SECS")?.parse()?;
                run_for = Some(Duration::from_secs_f64(secs));
            }
            "--data-dir" => data_dir = Some(args.next().context("--data-dir DIR")?),
            other => bail!("unknown argument {other:?} (use --for SECS, --data-dir DIR)"),
        }
    }

    let mut config = NodeConfig::default();
    config.biological.primary_role = "Young".to_string();
    let mut builder = Node::builder()
        .with_config(config)
        .with_initial_role(BiologicalRole::Young);
    if let Some(d) = data_dir {
        builder = builder.with_data_dir(d);
    }
    let node = builder.build().await?;
    node.start().await?;

    println!("peer id: {}", node.peer_id());
    println!("role:    {}", node.role());
    println!("workers: {}", node.workers());
    println!("listening on:");
    for a in node.addrs() {
        println!("  {a}");
    }

    let stop = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            ev = node.next_event() => match ev {
                Some(ev) => println!("{}", serde_json::to_string(&ev)?),
                None => break,
            },
        }
    }
    node.stop().await;
    println!("stopped");
    Ok(())
}
