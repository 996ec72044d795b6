//! The verbs around the engine rather than its containers: `version`,
//! `completion` (clap_complete) and `man` (clap_mangen).

use clap::Command;
use engine::Error;
use std::path::{Path, PathBuf};

/// The man pages' name: `engine(1)` is OpenSSL's on Debian (openssl's
/// `engine` page, which `man engine` opens), so the engine's pages are
/// `engine-ctr.1` and `engine-ctr-VERB.1`, as git's are `git-VERB.1`.
pub const MAN_NAME: &str = "engine-ctr";

/// The shells `engine completion` writes a script for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `engine version`: the engine's, and what it runs on.
pub fn version() -> String {
    let uname = rustix::system::uname();
    format!(
        "engine {}\nkernel: {} {}\narchitecture: {}\nOCI runtime spec: 1.0.0 to 1.3.0 (the runc command line)\n",
        env!("CARGO_PKG_VERSION"),
        uname.sysname().to_string_lossy(),
        uname.release().to_string_lossy(),
        uname.machine().to_string_lossy(),
    )
}

/// `engine completion SHELL`: the script on stdout.
pub fn completion(shell: Shell, mut cli: Command) {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cli, "engine", &mut std::io::stdout());
}

/// `engine man DIR`: one page for `engine` and one per verb (and per verb
/// of `rootfs`), written into DIR (which must exist); returns their paths.
pub fn man_pages(cli: Command, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    if !dir.is_dir() {
        return Err(Error::Input(format!(
            "{} is not a directory: create it, or name another for the man pages",
            dir.display()
        )));
    }
    // The display name gives the file and page names; the bin name
    // (`engine run`) the synopsis.
    let mut cli = cli
        .display_name(MAN_NAME)
        .bin_name("engine")
        .disable_help_subcommand(true);
    cli.build();
    let mut written = Vec::new();
    write_pages(&cli, dir, &mut written).map_err(|e| {
        Error::Engine(format!(
            "cannot write the man pages into {}: {e}",
            dir.display()
        ))
    })?;
    Ok(written)
}

fn write_pages(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    let title = cmd.get_display_name().unwrap_or(MAN_NAME).to_uppercase();
    let page = clap_mangen::Man::new(cmd.clone())
        .title(title)
        .manual("engine manual");
    written.push(page.generate_to(dir)?);
    Ok(())
}
