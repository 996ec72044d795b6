//! Where a verb's own options end and the container's command begins, as
//! docker reads `docker run [OPTIONS] IMAGE [COMMAND [ARG...]]`: the
//! options come before the first positional (the rootfs, or the name of
//! `exec`), and every word after it is the command, however it looks
//! (`-c`, `--help`, `--`). A `--` right after that positional is dropped,
//! so the engine's older `engine run ROOTFS -- CMD` still works.
//!
//! clap alone would go on reading options after the positional; so the
//! words are split here, from the verb's own clap definition (which
//! options take a value), and clap is given `VERB OPTIONS POSITIONAL --
//! COMMAND...`, which it reads as intended.

use clap::Command;

/// `args` (argv, the verb at `verb_at`) with a `--` put after the verb's
/// first positional when a command follows it (and an existing `--` there
/// kept as the only one). Unchanged when there is no positional (help, or
/// an error clap will report).
pub fn mark_command(args: Vec<String>, verb_at: usize, verb: &Command) -> Vec<String> {
    let Some(positional) = first_positional(&args[verb_at + 1..], verb).map(|i| i + verb_at + 1)
    else {
        return args;
    };
    // A `--` before the positional (`engine run -- ROOTFS CMD`) is dropped:
    // clap would read every word after it as a value, the `--` put in below
    // as well.
    let mut out: Vec<String> = args[..positional]
        .iter()
        .enumerate()
        .filter(|(i, w)| !(*i == positional - 1 && *w == "--"))
        .map(|(_, w)| w.clone())
        .collect();
    out.push(args[positional].clone());
    let rest = &args[positional + 1..];
    if rest.is_empty() {
        return out;
    }
    out.push("--".into());
    let rest = match rest.first() {
        Some(first) if first == "--" => &rest[1..],
        _ => rest,
    };
    out.extend(rest.iter().cloned());
    out
}

/// The index in `words` (the words after the verb) of the first positional.
fn first_positional(words: &[String], verb: &Command) -> Option<usize> {
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if w == "--" {
            return (i + 1 < words.len()).then_some(i + 1);
        }
        if let Some(long) = w.strip_prefix("--") {
            // `--name=web` carries its value; `--name web` takes the next word.
            if !long.contains('=') && long_takes_value(verb, long) {
                i += 1;
            }
        } else if let Some(cluster) = w.strip_prefix('-').filter(|c| !c.is_empty()) {
            // `-it`, `-dp 8080:80`, `-p8080:80`: the first short that takes a
            // value takes the rest of the cluster, or else the next word.
            for (at, c) in cluster.char_indices() {
                if short_takes_value(verb, c) {
                    if at + c.len_utf8() == cluster.len() {
                        i += 1;
                    }
                    break;
                }
            }
        } else {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn takes_next_word(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values()
        && !arg.is_require_equals_set()
        && arg.get_num_args().is_none_or(|n| n.min_values() > 0)
}

fn long_takes_value(verb: &Command, long: &str) -> bool {
    verb.get_arguments()
        .find(|a| {
            a.get_long() == Some(long)
                || a.get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&long))
        })
        .is_some_and(takes_next_word)
}

fn short_takes_value(verb: &Command, short: char) -> bool {
    verb.get_arguments()
        .find(|a| a.get_short() == Some(short))
        .is_some_and(takes_next_word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn verb() -> Command {
        Command::new("run")
            .arg(Arg::new("name").long("name"))
            .arg(Arg::new("publish").long("publish").short('p'))
            .arg(Arg::new("detach").short('d').action(ArgAction::SetTrue))
            .arg(
                Arg::new("interactive")
                    .short('i')
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("tty")
                    .short('t')
                    .long("tty")
                    .num_args(0..=1)
                    .require_equals(true),
            )
            .arg(Arg::new("rootfs"))
            .arg(Arg::new("command").num_args(0..))
    }

    fn split(words: &[&str]) -> Vec<String> {
        let args: Vec<String> = ["engine", "run"]
            .iter()
            .chain(words)
            .map(|s| s.to_string())
            .collect();
        mark_command(args, 1, &verb())[2..].to_vec()
    }

    #[test]
    fn the_command_starts_after_the_first_positional() {
        assert_eq!(
            split(&["busybox", "echo", "hi"]),
            ["busybox", "--", "echo", "hi"]
        );
        assert_eq!(split(&["busybox", "-d"]), ["busybox", "--", "-d"]);
        assert_eq!(
            split(&["--name", "web", "-it", "busybox", "sh", "-c", "a -- b"]),
            ["--name", "web", "-it", "busybox", "--", "sh", "-c", "a -- b"]
        );
        assert_eq!(split(&["--name=web", "busybox"]), ["--name=web", "busybox"]);
        assert_eq!(
            split(&["-dp", "80:80", "b", "x"]),
            ["-dp", "80:80", "b", "--", "x"]
        );
        assert_eq!(split(&["-p80:80", "b", "x"]), ["-p80:80", "b", "--", "x"]);
        assert_eq!(
            split(&["--tty=false", "b", "x"]),
            ["--tty=false", "b", "--", "x"]
        );
        assert_eq!(split(&["-t", "b", "x"]), ["-t", "b", "--", "x"]);
    }

    #[test]
    fn one_dash_dash_after_the_rootfs_is_dropped_and_later_ones_kept() {
        assert_eq!(split(&["b", "--", "true"]), ["b", "--", "true"]);
        assert_eq!(split(&["b", "--", "--", "x"]), ["b", "--", "--", "x"]);
        assert_eq!(split(&["b", "echo", "--"]), ["b", "--", "echo", "--"]);
        assert_eq!(split(&["--", "b", "true"]), ["b", "--", "true"]);
    }

    #[test]
    fn without_a_positional_clap_gets_the_words_as_they_are() {
        assert_eq!(split(&["--help"]), ["--help"]);
        assert_eq!(split(&["--name"]), ["--name"]);
        assert_eq!(split(&[]), Vec::<String>::new());
    }
}
