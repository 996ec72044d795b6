//! clap's parse errors as the engine's one-line sentences: what was wrong,
//! the nearest verb or option when there is one, and where the help is.
//! clap's own text runs to several lines, and its tip "to pass '-i' as a
//! value, use '-- -i'" misleads: after the rootfs every word is the
//! command already.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Command;

/// The sentence for a parse error of `args` against `cli` (no "engine: ").
pub fn sentence(err: &clap::Error, args: &[String], cli: &Command) -> String {
    let verb = args
        .get(1)
        .and_then(|v| cli.find_subcommand(v))
        .map(|sub| sub.get_name().to_string());
    let help = match &verb {
        Some(v) => format!("`engine {v} --help` lists its options"),
        None => "`engine help` lists the commands".to_string(),
    };
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    match err.kind() {
        ErrorKind::InvalidSubcommand => {
            let bad = text(ContextKind::InvalidSubcommand).unwrap_or_default();
            let names = cli
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| s.get_name());
            let near = text(ContextKind::SuggestedSubcommand).or_else(|| nearest(&bad, names));
            format!("unknown command '{bad}'{} ({help})", did_you_mean(near))
        }
        ErrorKind::UnknownArgument => {
            let bad = text(ContextKind::InvalidArg).unwrap_or_default();
            let longs = verb
                .as_deref()
                .and_then(|v| cli.find_subcommand(v))
                .unwrap_or(cli)
                .get_arguments()
                .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
                .collect::<Vec<_>>();
            let near = text(ContextKind::SuggestedArg)
                .or_else(|| nearest(&bad, longs.iter().map(String::as_str)));
            let of = verb
                .map(|v| format!(" of `engine {v}`"))
                .unwrap_or_default();
            format!("unknown option '{bad}'{of}{} ({help})", did_you_mean(near))
        }
        ErrorKind::MissingRequiredArgument => {
            let missing = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(v)) => v.join(", "),
                _ => String::new(),
            };
            format!("missing {missing} ({help})")
        }
        _ => {
            // clap's first line, without its "error: ".
            let rendered = err.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first).trim_end();
            let value = text(ContextKind::SuggestedValue)
                .map(|v| format!(": did you mean '{v}'?"))
                .unwrap_or_default();
            let valid = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) if !v.is_empty() => {
                    format!(" (one of: {})", v.join(", "))
                }
                _ => String::new(),
            };
            format!("{first}{value}{valid} ({help})")
        }
    }
}

fn did_you_mean(near: Option<String>) -> String {
    near.map(|n| format!(": did you mean '{n}'?"))
        .unwrap_or_default()
}

/// The candidate nearest to `word` by edit distance with transpositions,
/// when it is close: clap's own guess (Jaro similarity) misses a swap of
/// two letters in a short word (`rnu` for `run`).
fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let limit = if word.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Optimal string alignment distance: insertions, deletions,
/// substitutions and swaps of neighbours each cost 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_is_one_edit() {
        assert_eq!(edit_distance("rnu", "run"), 1);
        assert_eq!(edit_distance("run", "run"), 0);
        assert_eq!(edit_distance("stpo", "stop"), 1);
        assert_eq!(edit_distance("ps", "logs"), 3);
    }

    #[test]
    fn only_a_close_word_is_suggested() {
        let verbs = ["run", "ps", "stop", "exec", "logs"];
        assert_eq!(nearest("rnu", verbs.into_iter()), Some("run".into()));
        assert_eq!(nearest("exce", verbs.into_iter()), Some("exec".into()));
        assert_eq!(nearest("xyz", verbs.into_iter()), None);
    }
}
