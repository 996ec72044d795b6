//! Per-scenario results, passed from the runner to the launcher as JSON
//! lines in a file both can reach (a directory shared writable with the guest).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One scenario's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    /// Why it failed; empty when it passed.
    pub message: String,
    /// How long it took, in seconds.
    pub secs: f64,
}

/// Appends `outcome` as one line and syncs it, so that a guest that dies
/// right after still has reported it.
pub fn append(path: &Path, outcome: &Outcome) -> Result<()> {
    let mut line = serde_json::to_string(outcome).context("cannot encode a result")?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the results file {}", path.display()))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write to the results file {}", path.display()))
}

/// Every outcome in `path`, by name (a later line for the same name wins).
/// A missing file is an empty map; a malformed line is an error.
pub fn read(path: &Path) -> Result<BTreeMap<String, Outcome>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut out = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let outcome: Outcome = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a result: {line}", path.display(), i + 1))?;
        out.insert(outcome.name.clone(), outcome);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_through_the_file() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_path_buf();
        let path = dir.join("results.jsonl");
        let _ = std::fs::remove_file(&path);
        assert!(read(&path).unwrap().is_empty());
        let a = Outcome {
            name: "busybox::processes".into(),
            ok: true,
            message: String::new(),
            secs: 1.5,
        };
        let b = Outcome {
            name: "busybox::users".into(),
            ok: false,
            message: "expected root\nsaw nobody".into(),
            secs: 0.25,
        };
        append(&path, &a).unwrap();
        append(&path, &b).unwrap();
        let got = read(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["busybox::processes"], a);
        assert_eq!(got["busybox::users"], b);
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(read(&path).is_err());
    }
}
