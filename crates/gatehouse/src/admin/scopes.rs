//! `gatehouse scopes`: define, list, retire, import.

use std::path::PathBuf;

use clap::Subcommand;
use gatehouse_api::v1 as pb;
use serde_json::{Value, json};

use super::{Connection, Failure, table, usage};

#[derive(Debug, Subcommand)]
pub enum ScopesCommand {
    /// Define a catalogue scope (or bring back a retired one, or change its
    /// description). Needs platform:admin.
    Define {
        /// `resource:action`, e.g. `claws:read`.
        name: String,
        #[arg(long)]
        description: String,
    },
    /// List the built-in scopes and the catalogue.
    List,
    /// Retire a catalogue scope: nobody holds it from now on. Needs platform:admin.
    Retire { name: String },
    /// Make the catalogue hold what a TOML file names (`[[scope]]` tables with
    /// `name` and `description`); a second import writes nothing. Needs
    /// platform:admin.
    Import {
        file: PathBuf,
        /// Also retire catalogue scopes the file does not name.
        #[arg(long)]
        prune: bool,
    },
}
fn scope_json(scope: &pb::ScopeInfo) -> Value {
    json!({
        "name": scope.name,
        "description": scope.description,
        "retired": scope.retired,
        "built_in": scope.built_in,
    })
}

fn print_scopes(json_out: bool, scopes: &[pb::ScopeInfo]) {
    if json_out {
        println!("{}", Value::Array(scopes.iter().map(scope_json).collect()));
        return;
    }
    let rows: Vec<Vec<String>> = scopes
        .iter()
        .map(|s| {
            let state = match (s.built_in, s.retired) {
                (true, _) => "built-in",
                (false, true) => "retired",
                (false, false) => "live",
            };
            vec![s.name.clone(), state.to_string(), s.description.clone()]
        })
        .collect();
    table(&["SCOPE", "STATE", "DESCRIPTION"], &rows);
}

/// A scope catalogue file: `[[scope]]` tables of `name` and `description`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    #[serde(default)]
    scope: Vec<gatehouse_domain::catalogue::Definition>,
}

/// Reads a scope catalogue file (TOML).
pub fn read_scope_file(
    path: &std::path::Path,
) -> Result<Vec<gatehouse_domain::catalogue::Definition>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: ScopeFile = toml::from_str(&text).map_err(|e| {
        format!(
            "{} is not a scope file ([[scope]] tables with name and description): {}",
            path.display(),
            e.message()
        )
    })?;
    Ok(file.scope)
}

/// `gatehouse scopes …`.
pub async fn scopes(conn: &Connection, command: ScopesCommand) -> Result<(), Failure> {
    let client = conn.client().await?;
    match command {
        ScopesCommand::Define { name, description } => {
            let (scope, changed) = client.define_scope(&name, &description).await?;
            if !changed {
                eprintln!("{} already stands as asked; nothing written", scope.name);
            }
            print_scopes(conn.json, &[scope]);
        }
        ScopesCommand::List => {
            let scopes = client.list_scopes().await?;
            print_scopes(conn.json, &scopes);
        }
        ScopesCommand::Retire { name } => {
            let scope = client.retire_scope(&name).await?;
            print_scopes(conn.json, &[scope]);
        }
        ScopesCommand::Import { file, prune } => {
            let definitions = read_scope_file(&file).map_err(usage)?;
            let imported = client
                .import_scopes(
                    definitions
                        .into_iter()
                        .map(|d| (d.name, d.description))
                        .collect(),
                    prune,
                )
                .await?;
            if conn.json {
                println!(
                    "{}",
                    json!({
                        "defined": imported.defined,
                        "described": imported.described,
                        "retired": imported.retired,
                    })
                );
            } else {
                println!(
                    "defined {}, described {}, retired {}",
                    imported.defined.len(),
                    imported.described.len(),
                    imported.retired.len()
                );
                for (what, names) in [
                    ("defined", &imported.defined),
                    ("described", &imported.described),
                    ("retired", &imported.retired),
                ] {
                    for name in names {
                        println!("  {what} {name}");
                    }
                }
            }
        }
    }
    Ok(())
}
