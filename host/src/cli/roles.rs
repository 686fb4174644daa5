//! `biop2p roles`: the node types, each a composition of real behaviours.

use std::process::ExitCode;

use anyhow::Result;

/// List the biological roles and node types, with what each does differently.
#[derive(clap::Args)]
pub struct Args {
    /// One JSON line per node type.
    #[arg(long)]
    json: bool,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let types = roles::taxonomy();
    if a.json {
        for t in &types {
            let base: Vec<String> = t.base.iter().map(|r| r.to_string()).collect();
            let params: serde_json::Map<String, serde_json::Value> = t
                .params
                .iter()
                .map(|(k, v)| (k.clone(), (*v).into()))
                .collect();
            println!(
                "{}",
                serde_json::json!({"name": t.name, "base": base, "params": params, "differs": t.differs})
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("Roles:");
    for r in roles::BiologicalRole::ALL {
        println!("  {:<8} {}", r.to_string(), r.inspiration());
    }
    println!(
        "\n{} node types (each a named composition of the roles above):",
        types.len()
    );
    for t in &types {
        let base: Vec<String> = t.base.iter().map(|r| r.to_string()).collect();
        let params: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {:<32} [{}] {}", t.name, base.join("+"), t.differs);
        println!("  {:<32} {}", "", params.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
