//! `bench fields`: checking a signed record with very many fields (issue 11, item 5). Every
//! relaying node runs `protocol::validate` and the signature check on each record it receives,
//! so their cost must grow with the record's size, not with its square. The baseline is one
//! linear pass over the same record: building its canonical signing bytes.

use std::time::Instant;

use clap::Args;
use protocol::{Entity, Record, Scope, SecretKey, Version};
use serde_json::{Value, json};

use super::{Result, print_result};

#[derive(Debug, Args)]
pub struct FieldsArgs {
    /// Fields of the record (within the record size limit).
    #[arg(long, default_value_t = 90_000)]
    pub fields: usize,
    /// Runs of each measurement; the fastest is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// The fastest of `runs` runs of `f`, in milliseconds.
fn fastest(runs: usize, mut f: impl FnMut() -> bool) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        if !f() {
            return Err("a measured step failed".into());
        }
        best = best.min(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(best)
}

pub fn run(args: &FieldsArgs, json_out: bool) -> Result<()> {
    let key = SecretKey::from_bytes(&[7; 32]);
    let mut record = Record {
        origin: key.public(),
        entity: Entity::User,
        id: "1".into(),
        version: Version::new(1_800_000_000_000, 0),
        scope: Scope::Public,
        deleted: false,
        fields: std::iter::once(("Username".to_string(), "rosa".to_string()))
            .chain((0..args.fields).map(|i| (format!("F{i}"), "v".to_string())))
            .collect(),
        body: String::new(),
        signature: None,
    };
    record.sign(&key)?;
    let bytes = record.signing_bytes().len();
    let baseline_ms = fastest(args.runs, || !record.signing_bytes().is_empty())?;
    let validate_ms = fastest(args.runs, || protocol::validate(&record).is_ok())?;
    let verify_ms = fastest(args.runs, || record.verify().is_ok())?;
    let doc = json!({
        "fields": record.fields.len(),
        "record_bytes": bytes,
        "baseline_signing_bytes_ms": baseline_ms,
        "validate_ms": validate_ms,
        "verify_ms": verify_ms,
        "validate_vs_baseline": validate_ms / baseline_ms,
        "verify_vs_baseline": verify_ms / baseline_ms,
        "target_validate_ms": 50,
    });
    print_result(&doc, json_out, table)
}

fn table(d: &Value) -> String {
    let f = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "record with {} fields ({} bytes signed)\n\
         baseline (signing bytes, one pass): {:>9.2} ms\n\
         protocol::validate:                  {:>9.2} ms  ({:.1}x baseline; target < 50 ms)\n\
         signature check (verify):            {:>9.2} ms  ({:.1}x baseline)\n",
        d["fields"],
        d["record_bytes"],
        f("baseline_signing_bytes_ms"),
        f("validate_ms"),
        f("validate_vs_baseline"),
        f("verify_ms"),
        f("verify_vs_baseline"),
    )
}
