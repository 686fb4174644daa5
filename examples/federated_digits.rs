//! Federated training of a handwritten-digits classifier across a local
//! swarm of five hosts, one of which poisons its updates; FedAvg and the
//! robust coordinate-wise median (FedMedian) are compared in one run.
//!
//! ```sh
//! scripts/fetch-ai-data.sh          # once: the digits data, from PyPI
//! cargo run --release -p biop2p --example federated_digits
//! ```
//!
//! The same run is `biop2p demo --federated --poison 1`.

use biop2p::ai::digits::Digits;
use biop2p::ai::federated::{self, FederatedConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let digits = Digits::load()?;
    let cfg = FederatedConfig {
        poison: 1,
        ..FederatedConfig::default()
    };
    let root = tempfile::tempdir()?;
    let r = federated::run(&cfg, &digits, root.path(), |l| println!("{l}")).await?;
    println!(
        "{}: {:.2}%   FedAvg: {:.2}%   replicas bit-identical: {:.0}%   caught: {:?}",
        r.aggregator,
        r.final_accuracy_robust * 100.0,
        r.final_accuracy_fedavg * 100.0,
        r.replicas_identical * 100.0,
        r.caught
    );
    anyhow::ensure!(r.target_reached, "the robust model missed its target");
    Ok(())
}
