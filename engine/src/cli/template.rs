//! `engine ps --format '{{.Names}} {{.Status}}'`: docker's Go-template
//! style, for the one thing scripts do with it: fields in a line. A tiny
//! expander, not a template engine: `{{.Field}}` (spaces inside the braces
//! allowed), `\t` and `\n` as docker turns them, and a `table ` prefix for
//! a header line and aligned columns. Anything else inside `{{ }}` is
//! refused, as is an unknown field, with the list of known ones.

/// The fields of `engine ps`, docker's names, and their table headers.
pub const PS_FIELDS: [(&str, &str); 8] = [
    ("ID", "CONTAINER ID"),
    ("Names", "NAMES"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("CreatedAt", "CREATED AT"),
];

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// An index into the field list.
    Field(usize),
}

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
    /// `table ...`: a header line, columns aligned at tabs.
    table: bool,
}

fn known(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(f, _)| format!(".{f}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Template {
    /// Parses `format` against `fields` (name, header); a bad one is
    /// refused with a sentence.
    pub fn parse(format: &str, fields: &[(&str, &str)]) -> Result<Template, String> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start_matches(' '))
            }
            _ => (false, format),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = body.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!("--format {format:?} opens {{{{ without closing it: write {{{{.Names}}}}")
            })?;
            let inner = after[..close].trim();
            let Some(name) = inner.strip_prefix('.') else {
                return Err(format!(
                    "--format {format:?}: {{{{{inner}}}}} is not supported: only fields are, {{{{.Name}}}} with one of {}",
                    known(fields)
                ));
            };
            let index = fields.iter().position(|(f, _)| *f == name).ok_or_else(|| {
                format!(
                    "--format {format:?}: unknown field .{name}: use one of {}",
                    known(fields)
                )
            })?;
            pieces.push(Piece::Field(index));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces, table })
    }

    fn line(&self, value: impl Fn(usize) -> String) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Field(i) => value(*i),
            })
            .collect()
    }

    /// The output for `rows` (each row's field values in `fields`'
    /// order): one line per row; a table has the headers first and its
    /// tab-separated cells padded to align, three spaces apart as docker's.
    pub fn render(&self, fields: &[(&str, &str)], rows: &[Vec<String>]) -> String {
        let mut lines: Vec<String> = Vec::new();
        if self.table {
            lines.push(self.line(|i| fields[i].1.to_string()));
        }
        lines.extend(rows.iter().map(|r| self.line(|i| r[i].clone())));
        if !self.table {
            return lines.iter().map(|l| format!("{l}\n")).collect();
        }
        let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
        let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                cells
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in cells {
            let last = row.len().saturating_sub(1);
            for (c, cell) in row.iter().enumerate() {
                if c == last {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}   ", w = widths[c]));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Unix seconds as docker's CreatedAt: `2026-12-06 22:10:00 +0000 UTC`.
pub fn utc_time(secs: u64) -> String {
    let (days, rest) = (secs / 86400, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000 UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<String>> {
        let row = |name: &str, status: &str| {
            PS_FIELDS
                .iter()
                .map(|(f, _)| match *f {
                    "Names" => name.to_string(),
                    "Status" => status.to_string(),
                    other => format!("<{other}>"),
                })
                .collect()
        };
        vec![
            row("web", "Up 5 seconds"),
            row("a-longer-name", "Exited (3) 1 second ago"),
        ]
    }

    #[test]
    fn created_at_as_docker_prints_it() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 +0000 UTC");
        assert_eq!(utc_time(1_796_595_000), "2026-12-06 22:10:00 +0000 UTC");
    }

    #[test]
    fn fields_in_a_line() {
        let t = Template::parse("{{.Names}} {{ .Status }}", &PS_FIELDS).unwrap();
        assert_eq!(
            t.render(&PS_FIELDS, &rows()),
            "web Up 5 seconds\na-longer-name Exited (3) 1 second ago\n"
        );
        let t = Template::parse("{{.Names}}\\t{{.ID}}{{.Image}}", &PS_FIELDS).unwrap();
        assert_eq!(t.render(&PS_FIELDS, &rows()[..1]), "web\t<ID><Image>\n");
    }

    #[test]
    fn a_table_has_headers_and_columns() {
        let t = Template::parse("table {{.Names}}\\t{{.Status}}", &PS_FIELDS).unwrap();
        assert_eq!(
            t.render(&PS_FIELDS, &rows()),
            "NAMES           STATUS\nweb             Up 5 seconds\na-longer-name   Exited (3) 1 second ago\n"
        );
        // No rows: the headers alone.
        assert_eq!(t.render(&PS_FIELDS, &[]), "NAMES   STATUS\n");
    }

    #[test]
    fn unknown_fields_and_other_template_syntax_are_refused() {
        let err = Template::parse("{{.Name}}", &PS_FIELDS).unwrap_err();
        assert_eq!(
            err,
            "--format \"{{.Name}}\": unknown field .Name: use one of .ID .Names .Image .Command .Status .State .Ports .CreatedAt"
        );
        for bad in ["{{json .}}", "{{.Names", "{{range .}}x{{end}}", "{{}}"] {
            assert!(Template::parse(bad, &PS_FIELDS).is_err(), "{bad}");
        }
        // "tablet" is text, not a table.
        let t = Template::parse("tablet", &PS_FIELDS).unwrap();
        assert_eq!(t.render(&PS_FIELDS, &rows()[..1]), "tablet\n");
    }
}
