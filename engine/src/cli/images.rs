//! `engine images`: the store's images as docker's table, or JSON.

use engine::{Error, ImageRecord};
use serde::Serialize;

/// One row: an image once per name (`<none>` for an image without one).
#[derive(Serialize)]
struct Row {
    repository: String,
    tag: String,
    id: String,
    digest: Option<String>,
    created: Option<String>,
    size: u64,
}

fn rows(records: &[ImageRecord]) -> Vec<Row> {
    let mut rows = Vec::new();
    for record in records {
        let row = |repository: &str, tag: &str| Row {
            repository: repository.into(),
            tag: tag.into(),
            id: record.id.clone(),
            digest: record.digest.clone(),
            created: record.created.clone(),
            size: record.size,
        };
        if record.names.is_empty() {
            rows.push(row("<none>", "<none>"));
        }
        for name in &record.names {
            // A name's tag is after the colon that follows its last slash.
            let slash = name.rfind('/').map_or(0, |i| i + 1);
            match name[slash..].rfind(':') {
                Some(i) => rows.push(row(&name[..slash + i], &name[slash + i + 1..])),
                None => rows.push(row(name, "<none>")),
            }
        }
    }
    rows
}

pub fn list(format: &str) -> Result<i32, Error> {
    let json = wants_json(format)?;
    let rows = rows(&engine::images()?);
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::Engine(format!("cannot encode the list: {e}")))?;
        println!("{text}");
        return Ok(0);
    }
    let short = |id: &str| {
        id.trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>()
    };
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.repository.clone(),
                r.tag.clone(),
                short(&r.id),
                r.created
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(19)
                    .collect(),
                format!("{:.1}MB", r.size as f64 / 1e6),
            ]
        })
        .collect();
    let header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.len());
        }
    }
    for line in std::iter::once(&header).chain(&table) {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("   ").trim_end());
    }
    Ok(0)
}

/// `--format table|json` of `ps` and `images`: whether JSON was asked for.
pub fn wants_json(format: &str) -> Result<bool, Error> {
    match format {
        "json" => Ok(true),
        "table" => Ok(false),
        other => Err(Error::Input(format!(
            "unknown --format {other:?}: use table or json"
        ))),
    }
}
