//! engine: a small Linux container engine.
//!
//! This file is the facade both command lines call (main.rs, and runc's in
//! cli/oci.rs): thin verbs that return one typed [`Error`]. Imports point one way:
//! `main` -> this facade -> `model` (pure parsing), `validate` (host checks),
//! `parent` (the host side) -> `child` (inside the namespaces, before exec)
//! -> `sys` (host facilities, each a leaf). `image` pulls root file systems
//! and is used by the facade, never by the child.

pub mod child;
pub mod error;
pub mod image;
pub mod model;
pub mod oci;
pub mod parent;
pub mod sys;
pub mod validate;

pub use error::{Error, Result};
pub use model::config::Config;
pub use model::spec::{Spec, SpecInput};
pub use parent::lifecycle::{ago, PsReport, PsRow};
/// What the engine keeps about a container (`engine inspect` prints it).
pub use parent::record::Record as ContainerRecord;

use model::spec::{Request, RootfsSource};
use parent::lifecycle;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sys::failpoint::step;
use sys::state::StateDir;

// Kept at this path for callers (main.rs, tests); defined in the model so
// that nothing below the facade names lib.rs.
pub use model::exit;

/// The validated description of a container to run: all input is parsed
/// first (so bad input is refused before anything is pulled or created),
/// then a catalog rootfs is pulled, then the request is checked against the host.
pub fn prepare(input: SpecInput, cfg: &Config) -> Result<Spec> {
    let input = read_env_files(input)?;
    // A kept container's record holds what was given, for `engine start`.
    let mut origin = (input.detach && !input.rm).then(|| input.clone());
    let mut request = Request::parse(input, cfg, sys::random::u32)?;
    if matches!(&request.rootfs, RootfsSource::Catalog(name) if name == "busybox" && !Path::new(name).exists())
    {
        // Interactive shells of the catalog busybox read its start-up file
        // (bare `ping` is iputils'); first, so a given -e ENV wins. Kept
        // in the record too: `start` finds the rootfs by its path.
        let startup = image::BUSYBOX_SHELL_STARTUP;
        request.env.insert(0, ("ENV".into(), startup.into()));
        if let Some(o) = origin.as_mut() {
            o.env.insert(0, format!("ENV={startup}"));
        }
    }
    validate::require_root()?;
    if let Some(text) = image_named(&request.rootfs) {
        return prepare_image(request, text, origin, cfg);
    }
    let rootfs = match &request.rootfs {
        // A directory of that name in the working directory wins.
        RootfsSource::Catalog(name) if !Path::new(name).exists() => {
            image::cached(name, &cfg.rootfs_cache).map_err(|e| image::Error::Rootfs {
                name: name.clone(),
                source: Box::new(e),
            })?
        }
        RootfsSource::Catalog(name) => validate::rootfs_dir(Path::new(name))?,
        RootfsSource::Dir(dir) => validate::rootfs_dir(dir)?,
        RootfsSource::Image(_) => unreachable!("images are prepared above"),
    };
    let user = request.user.clone();
    let mut spec = validate::validate(request, rootfs, cfg)?;
    if let Some(user) = user {
        let layers = [spec.rootfs.clone()];
        apply_user(&mut spec, &layers, &user)?;
    }
    spec.origin = origin.map(|mut o| {
        // The same container, wherever `start` is called from.
        o.name = Some(spec.name.clone());
        o.rootfs = spec.rootfs.display().to_string();
        o
    });
    Ok(spec)
}

/// `--env-file`: each file's lines become `-e` words ahead of the given
/// ones (which win, as in docker), and the files are not read again by
/// `engine start` (docker keeps the environment, not the file).
fn read_env_files(mut input: SpecInput) -> Result<SpecInput> {
    let mut env = Vec::new();
    for file in std::mem::take(&mut input.env_file) {
        let text = std::fs::read(&file).map_err(|e| {
            Error::Input(format!(
                "cannot read --env-file {file}: {e}: give a readable file of KEY=VALUE lines"
            ))
        })?;
        let lookup = |key: &str| std::env::var(key).ok();
        env.extend(model::env::parse_env_file(&file, &text, lookup).map_err(model::Error::from)?);
    }
    env.append(&mut input.env);
    input.env = env;
    Ok(input)
}

/// The image a ROOTFS argument names, if it names one. In this order: a
/// transport (`oci:`...) is an image; an existing path is a rootfs
/// directory and a catalog name the catalog's (as before images); a
/// path-like word (`/...`, `./...`, `../...`) stays a directory (its
/// error says it does not exist); any other word that is a docker
/// reference is an image.
fn image_named(source: &RootfsSource) -> Option<String> {
    match source {
        RootfsSource::Image(text) => Some(text.clone()),
        RootfsSource::Catalog(_) => None,
        RootfsSource::Dir(dir) => {
            let text = dir.to_str()?;
            let path_like = text.starts_with('/') || text.starts_with('.');
            let exists = std::fs::symlink_metadata(dir).is_ok();
            let reference = image::reference::parse_named(text).is_ok()
                || image::store::Store::from_env()
                    .find(text)
                    .is_ok_and(|f| f.is_some());
            (!path_like && !exists && reference).then(|| text.to_string())
        }
    }
}

/// `prepare` for an image: found or pulled, its config applied with
/// docker's rules under the flags, its layers the rootfs.
fn prepare_image(
    mut request: Request,
    text: String,
    origin: Option<SpecInput>,
    cfg: &Config,
) -> Result<Spec> {
    use image::for_run;
    if request.write_through {
        return Err(Error::Input(
            "--write-through writes into the rootfs, and an image's layers are shared and stay read-only: drop --write-through".into(),
        ));
    }
    let platform = request
        .platform
        .as_deref()
        .map(image::registry::Platform::parse)
        .transpose()
        .map_err(|e| Error::Input(e.to_string()))?;
    let store = image::store::Store::from_env();
    let img =
        for_run::resolve(&store, &text, request.pull, platform.as_ref()).map_err(|m| match m {
            for_run::Missing::NeverPull(why) => Error::Input(why),
            for_run::Missing::Failed(e) => Error::Image(image::Error::Failed(format!("{e:#}"))),
        })?;
    let command = for_run::command(&img.config, request.entrypoint.as_deref(), &request.command);
    match command.first() {
        None => {
            return Err(Error::Input(format!(
                "image `{text}` gives no command (no Entrypoint or Cmd): give one after the image"
            )))
        }
        Some(c) if c.is_empty() => {
            return Err(model::Error::from(model::spec::Error::EmptyCommand).into())
        }
        Some(_) => {}
    }
    request.command = command;
    let mut env = for_run::env(&img.config);
    env.append(&mut request.env);
    request.env = env;
    if !request.workdir_given {
        if let Some(w) = for_run::workdir(&img.config).map_err(Error::input)? {
            request.workdir = w;
        }
    }
    let stop_signal = match img.config.stop_signal.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            parent::lifecycle::parse_signal(s)
                .map_err(|_| {
                    Error::Input(format!(
                        "image `{text}` has StopSignal {s:?}, which is no signal: fix the image"
                    ))
                })?
                .as_raw(),
        ),
    };
    let user = request
        .user
        .clone()
        .or_else(|| img.config.user.clone().filter(|u| !u.is_empty()));
    if img.layers.len() > for_run::MAX_LAYERS {
        return Err(Error::Input(format!(
            "image `{text}` has {} layers, more than the {} a container stacks (docker's limit too): use an image with fewer layers (squash it)",
            img.layers.len(),
            for_run::MAX_LAYERS
        )));
    }
    let top = img.layers[0].clone();
    let mut spec = validate::validate(request, top, cfg)?;
    if let Some(user) = user {
        apply_user(&mut spec, &img.layers, &user)?;
    }
    spec.image = Some(model::spec::ImageUse {
        reference: text,
        id: img.record.id.clone(),
        layers: img.layers,
        diff_ids: img.record.layers.clone(),
        stop_signal,
    });
    spec.origin = origin.map(|mut o| {
        // The same container, wherever `start` is called from.
        o.name = Some(spec.name.clone());
        o
    });
    Ok(spec)
}

/// `--user` (or an image's User) looked up in the tree of `layers` (top
/// first); the user's home becomes HOME unless the environment sets it.
fn apply_user(spec: &mut Spec, layers: &[std::path::PathBuf], user: &str) -> Result<()> {
    let (found, home) = image::passwd::lookup(layers, user).map_err(Error::input)?;
    let most = model::userns::USERNS_SIZE;
    if spec.userns != model::userns::UserNs::Host && (found.uid >= most || found.gid >= most) {
        return Err(Error::Input(format!(
            "user `{user}` is {}:{}, outside the container's {most} IDs: give a UID and GID below {most}",
            found.uid, found.gid
        )));
    }
    if let Some(home) = home.filter(|_| !spec.env.iter().any(|(k, _)| k == "HOME")) {
        spec.env.push(("HOME".into(), home));
    }
    spec.user = Some(found);
    Ok(())
}

/// Marks the image a container runs on as in use for as long as the
/// returned marker lives (`image::inuse`).
fn hold_image(spec: &Spec) -> Result<Option<image::inuse::Held>> {
    let Some(img) = &spec.image else {
        return Ok(None);
    };
    let store = image::store::Store::from_env();
    store
        .hold(&spec.name, &img.id, &img.diff_ids)
        .map(Some)
        .map_err(|e| Error::Image(e.into()))
}

/// `engine start`: runs each named exited container again, detached, with
/// the settings it was run with (its name, its log goes on); a running one
/// is left as it is. Calls `started` with each name.
pub fn start(cfg: &Config, names: &[String], mut started: impl FnMut(&str)) -> Result<()> {
    for n in names {
        check_name(n)?;
    }
    let state = state(cfg);
    let recs = names
        .iter()
        .map(|n| lifecycle::find_any(&state, cfg, n))
        .collect::<Result<Vec<_>, parent::Error>>()?;
    for rec in recs {
        if rec.exited() {
            let Some(input) = rec.input.clone() else {
                return Err(Error::Engine(format!(
                    "container {} was kept by an engine without `start`: remove it with `engine rm {}` and run it again",
                    rec.name, rec.name
                )));
            };
            let mut spec = prepare(input, cfg)?;
            spec.restart = true;
            // Started again: its restart policy holds again.
            let _ = std::fs::remove_file(state.stopped_mark_of(&rec.name));
            run_detached(&spec, cfg)?;
        }
        started(&rec.name);
    }
    Ok(())
}

/// Runs a container to its end; returns its exit status (128+N when killed by signal N).
pub fn run(spec: &Spec, cfg: &Config) -> Result<i32> {
    read_only_image_if_host_root(spec)?;
    let _in_use = hold_image(spec)?;
    Ok(parent::run::run(spec, cfg)?)
}

/// `run -d`: returns once the command has started; the container runs on
/// under a supervisor of its own.
pub fn run_detached(spec: &Spec, cfg: &Config) -> Result<()> {
    read_only_image_if_host_root(spec)?;
    let in_use = hold_image(spec)?;
    let marker = in_use.as_ref().map(|held| held.as_fd());
    parent::detach::run_detached(spec, cfg, marker)?;
    // The monitor and the supervisor forked with the marker's flock hold it on.
    if let Some(held) = in_use {
        held.hand_over();
    }
    Ok(())
}

/// A detached container's monitor (parent/monitor.rs), when the binary was
/// started as one (`engine __monitor …`, by `run -d`): its exit code.
pub fn run_as_monitor(argv: &[std::ffi::OsString]) -> Option<i32> {
    parent::monitor::parse(argv).map(|args| parent::monitor::run(&args))
}

/// A run again by a `--restart` policy whose supervisor was killed
/// (`engine __restart STATE_DIR DATA_DIR NAME`, exec'd by the container's monitor,
/// parent/monitor.rs): its exit code.
pub fn run_as_restart(argv: &[std::ffi::OsString]) -> Option<i32> {
    let [_, verb, state_dir, data_dir, name] = argv else {
        return None;
    };
    if verb != parent::monitor::RESTART_VERB {
        return None;
    }
    let mut cfg = Config::from_env();
    cfg.state_dir = state_dir.into();
    cfg.data_dir = data_dir.into();
    let name = name.to_string_lossy();
    match restart_by_policy(&cfg, &name) {
        Ok(()) => Some(0),
        Err(e) => {
            eprintln!("engine: {e}");
            // Failed before the record was replaced: plainly exited, as
            // after a supervisor's failed restart.
            let state = state(&cfg);
            if let Ok(_lock) = state.lock() {
                if let Some(mut rec) = state
                    .read::<parent::record::Record>(&name)
                    .filter(|r| r.exited() && r.restarting)
                {
                    rec.restarting = false;
                    let _ = state.write(&name, &rec);
                }
            }
            Some(e.exit_code())
        }
    }
}

/// As `engine start`, for a container its policy runs again: only while
/// its record says so, and its stop mark stays (`run` checks it under
/// the lock: a `stop` that came meanwhile wins).
fn restart_by_policy(cfg: &Config, name: &str) -> Result<()> {
    check_name(name)?;
    let rec = lifecycle::find_any(&state(cfg), cfg, name)?;
    let Some(input) = rec.input.clone().filter(|_| rec.exited() && rec.restarting) else {
        return Ok(());
    };
    let mut spec = prepare(input, cfg)?;
    spec.restart = true;
    run_detached(&spec, cfg)
}

/// Where host root is mapped into the container (no user namespace, or a
/// map from host 0) the engine runs from a read-only image of itself, as
/// `exec` always does. Never on the default path (the re-exec costs a
/// millisecond or two).
fn read_only_image_if_host_root(spec: &Spec) -> Result<()> {
    if spec.userns.maps_host_root() {
        parent::exec::rerun_from_read_only_image()?;
    }
    Ok(())
}

/// What `engine exec` asks for, unchecked.
pub struct ExecInput {
    pub name: String,
    pub command: Vec<String>,
    /// `KEY=VAL` or `KEY`.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
}

/// Runs a command inside a running container; returns its exit status.
pub fn exec(input: ExecInput, cfg: &Config) -> Result<i32> {
    let env = model::env::parse_envs(&input.env).map_err(model::Error::from)?;
    let workdir = match input.workdir {
        Some(w) => Some(model::env::parse_workdir(Some(w)).map_err(model::Error::from)?),
        None => None,
    };
    let user = input
        .user
        .as_deref()
        .map(model::users::parse_user)
        .transpose()
        .map_err(model::Error::from)?;
    check_name(&input.name)?;
    // The joining process runs this binary inside the container.
    step!("exec.read_only_image");
    parent::exec::rerun_from_read_only_image()?;
    step!("exec.find");
    let rec = lifecycle::find(&state(cfg), cfg, &input.name)?;
    let req = parent::exec::ExecRequest {
        env,
        workdir,
        tty: input.tty,
        command: input.command,
        user,
    };
    step!("exec.join");
    Ok(parent::exec::exec_into(&rec, &req)?)
}

/// The running containers (with `all`, the exited ones kept too), as the
/// `--filter KEY=VALUE` words narrow them, and the state records that
/// could not be read (released by this call). A bad filter is refused.
pub fn ps(cfg: &Config, all: bool, filters: &[String]) -> Result<PsReport> {
    let filter = lifecycle::PsFilter::parse(all, filters).map_err(Error::input)?;
    Ok(lifecycle::ps(&state(cfg), cfg, &filter)?)
}

/// Blocks while the named container runs; its exit status once it has
/// ended (a detached container's, kept until `rm`).
pub fn wait(cfg: &Config, name: &str) -> Result<i32> {
    check_name(name)?;
    Ok(lifecycle::wait(&state(cfg), cfg, name)?)
}

/// The records of the named containers, running or exited.
pub fn inspect(cfg: &Config, names: &[String]) -> Result<Vec<ContainerRecord>> {
    for n in names {
        check_name(n)?;
    }
    let state = state(cfg);
    Ok(names
        .iter()
        .map(|n| lifecycle::find_any(&state, cfg, n))
        .collect::<Result<Vec<_>, parent::Error>>()?)
}

/// Removes the named containers' kept records and logs; a running one is
/// refused unless `force` (then stopped at once first). Calls `removed`
/// with each name once it is gone. Every name is checked first.
pub fn rm(cfg: &Config, names: &[String], force: bool, removed: impl FnMut(&str)) -> Result<()> {
    for n in names {
        check_name(n)?;
    }
    Ok(lifecycle::rm(&state(cfg), cfg, names, force, removed)?)
}

/// Stops each named container (SIGTERM, SIGKILL after `grace`); calls
/// `stopped` with each name once it is gone. Every name is checked first.
pub fn stop(
    cfg: &Config,
    names: &[String],
    grace: Duration,
    mut stopped: impl FnMut(&str),
) -> Result<()> {
    for n in names {
        check_name(n)?;
    }
    let state = state(cfg);
    step!("stop.find");
    let recs = names
        .iter()
        .map(|n| lifecycle::find_any(&state, cfg, n))
        .collect::<Result<Vec<_>, parent::Error>>()?;
    for rec in &recs {
        step!("stop.policy");
        lifecycle::end_restart_policy(&state, rec)?;
        // As docker: stopping an exited container succeeds.
        if rec.exited() {
            stopped(&rec.name);
            continue;
        }
        step!("stop.stop");
        lifecycle::stop(&state, rec, grace)?;
        stopped(&rec.name);
    }
    Ok(())
}

/// Sends `signal` (a name such as TERM, or a number) to each named container's PID 1.
pub fn kill(cfg: &Config, names: &[String], signal: &str) -> Result<()> {
    let sig = lifecycle::parse_signal(signal).map_err(Error::input)?;
    for n in names {
        check_name(n)?;
    }
    let state = state(cfg);
    for name in names {
        step!("kill.find");
        let rec = lifecycle::find(&state, cfg, name)?;
        step!("kill.signal");
        lifecycle::kill(&rec, sig)?;
    }
    Ok(())
}

/// Prints a detached container's log to stdout; with `follow`, until it exits.
pub fn logs(cfg: &Config, name: &str, follow: bool) -> Result<()> {
    check_name(name)?;
    Ok(lifecycle::logs(&state(cfg), cfg, name, follow)?)
}

/// Options of `engine rootfs pull`.
pub use image::PullOptions;

/// Downloads (or builds) a root file system into `dest`. `--owner` is
/// checked against the host's users and the engine's pool first: a rootfs
/// owned by BASE runs as host IDs BASE.. (`validate::owner_base`).
pub fn pull(source: &str, dest: &Path, opts: &PullOptions) -> Result<()> {
    if let Some(base) = opts.owner {
        validate::owner_base(base)?;
    }
    Ok(image::pull(source, dest, opts)?)
}

/// An image's record in the store (`engine images`).
pub use image::store::ImageRecord;

/// `engine pull REF`: imports the image REF names into the store
/// (`ENGINE_IMAGE_STORE`), an index resolved to `platform` (`--platform
/// OS/ARCH[/VARIANT]`, else the host's); a malformed reference or platform
/// is refused first.
pub fn image_pull(reference: &str, platform: Option<&str>) -> Result<ImageRecord> {
    let parsed = image::reference::parse(reference).map_err(|e| Error::Input(e.to_string()))?;
    let platform = platform
        .map(image::registry::Platform::parse)
        .transpose()
        .map_err(|e| Error::Input(e.to_string()))?;
    validate::require_root()?;
    let store = image::store::Store::from_env();
    image::layout::import(&store, &parsed, platform.as_ref()).map_err(|e| {
        // An injected failure reads as every verb's does (the walk's line).
        #[cfg(feature = "failpoints")]
        if let Some(injected) = e.root_cause().downcast_ref::<sys::failpoint::Injected>() {
            return Error::Image(image::Error::Failed(injected.to_string()));
        }
        if image::store::out_of_space(&e) {
            return Error::Image(image::Error::Failed(format!(
                "cannot pull `{reference}`: the image store {} ran out of space (nothing of the image was kept): \
                 free space there or set ENGINE_IMAGE_STORE to a larger file system",
                store.root().display()
            )));
        }
        image_error(reference, e)
    })
}

/// `HOST[:PORT]` of `engine login`/`logout`, as docker takes it (an
/// `https://` and a trailing `/` are dropped); anything else is refused.
fn registry_host(text: &str) -> Result<String> {
    let host = text.trim();
    let host = host.strip_prefix("https://").unwrap_or(host);
    let host = host.strip_suffix('/').unwrap_or(host);
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if !ok {
        return Err(Error::Input(format!(
            "`{text}` is not a registry HOST[:PORT] (e.g. quay.io, localhost:5000)"
        )));
    }
    Ok(host.to_ascii_lowercase())
}

/// A login's failure, worded as one (the registry client words a pull's).
fn login_error(host: &str, err: image::registry::Error) -> Error {
    let text = err.to_string();
    let text = match text.strip_prefix(&format!("cannot pull {host}: ")) {
        Some(rest) => format!("cannot log in to {host}: {rest}"),
        None => text,
    };
    Error::Image(image::Error::Failed(text))
}

/// `engine login HOST`: the credentials are checked against the
/// registry's /v2/ and, if taken, saved for `pull` in the containers-auth
/// file podman uses; returns that file.
pub fn login(host: &str, user: &str, password: &str) -> Result<PathBuf> {
    let host = registry_host(host)?;
    if user.is_empty() || user.contains(':') {
        return Err(Error::Input(format!(
            "user `{user}` cannot be stored: give a user name without `:`"
        )));
    }
    let options = image::registry::Options::default();
    image::registry::login(&host, user, password, &options).map_err(|e| login_error(&host, e))
}

/// `engine logout HOST`: removes the registry's saved credentials.
pub fn logout(host: &str) -> Result<PathBuf> {
    let host = registry_host(host)?;
    image::registry::logout(&host).map_err(|e| login_error(&host, e))
}

/// `engine images`: every image in the store.
pub fn images() -> Result<Vec<ImageRecord>> {
    let store = image::store::Store::from_env();
    Ok(store.images().map_err(image::Error::from)?)
}

/// `engine rmi REF`: what was untagged and deleted, as docker prints it.
pub fn rmi(reference: &str, force: bool) -> Result<Vec<String>> {
    validate::require_root()?;
    let store = image::store::Store::from_env();
    Ok(store.remove(reference, force).map_err(image::Error::from)?)
}

/// `engine image prune`: the diff IDs of the layers removed (those no
/// image references and no running container uses).
pub fn image_prune() -> Result<Vec<String>> {
    validate::require_root()?;
    let store = image::store::Store::from_env();
    Ok(store.prune().map_err(image::Error::from)?)
}

/// `engine image inspect REF`: the record and the image config.
pub fn image_inspect(reference: &str) -> Result<serde_json::Value> {
    let store = image::store::Store::from_env();
    let found = store.find(reference).map_err(image::Error::from)?;
    let Some(record) = found else {
        return Err(Error::Input(format!(
            "no image `{reference}` in the store: `engine images` lists them, `engine pull` adds one"
        )));
    };
    let config = store.config(&record).map_err(image::Error::from)?;
    Ok(serde_json::json!({
        "Id": record.id,
        "Digest": record.digest,
        "RepoTags": record.names,
        "Created": record.created,
        "Size": record.size,
        "Architecture": config.architecture,
        "Os": config.os,
        "Config": config.config,
        "RootFS": { "Type": config.rootfs.kind, "Layers": record.layers },
    }))
}

/// A pull's failure, naming the reference (the registry client's errors
/// name it already).
fn image_error(reference: &str, err: anyhow::Error) -> Error {
    let text = if image::names_the_reference(&err) {
        format!("{err:#}")
    } else {
        format!("cannot pull `{reference}`: {err:#}")
    };
    Error::Image(image::Error::Failed(text))
}

/// Creates the bridge, turns on forwarding, prepares the parent cgroup.
pub fn setup(cfg: &Config) -> Result<()> {
    Ok(parent::host::setup(cfg)?)
}

/// Undoes `setup`; refuses while containers run unless `force`.
pub fn teardown(cfg: &Config, force: bool) -> Result<()> {
    Ok(parent::host::teardown(cfg, force)?)
}

/// A NAME given to a verb names a file of the state directory: the model's
/// check keeps it there (`engine logs ../../x` is refused).
fn check_name(name: &str) -> Result<()> {
    model::names::check_name(name)
        .map(drop)
        .map_err(|e| model::Error::from(e).into())
}

/// Options of `oci_create` and `oci_run` (runc's `create` flags).
pub use oci::CreateOptions as OciCreateOptions;
/// What `oci_exec` runs (runc's `exec` flags).
pub use oci::ExecOptions as OciExecOptions;

// The OCI runtime verbs (runc's, over the state directory `root`): a
// second front end fills them from runc's command line. Their errors are
// typed like every verb's; the front end chooses runc's exit codes.

/// An OCI verb's error: its typed variants as they are (`Error::Oci`),
/// the host side's as the facade's own (`Error::Parent`, so that a
/// command that cannot run keeps its 126 or 127), anything else as its
/// sentence.
fn oci_error(err: oci::Error) -> Error {
    match err {
        oci::Error::Parent(e) => Error::Parent(e),
        oci::Error::Other(e) => Error::Engine(format!("{e:#}")),
        typed => Error::Oci(typed),
    }
}

/// `create`: the container's init waits on its exec.fifo for `oci_start`.
pub fn oci_create(root: &Path, cfg: &Config, id: &str, opts: &OciCreateOptions) -> Result<()> {
    oci::create(&oci::Root::new(root), cfg, id, opts)
        .map(drop)
        .map_err(oci_error)
}

/// `start`: lets a created container's init exec its process.
pub fn oci_start(root: &Path, id: &str) -> Result<()> {
    oci::start(&oci::Root::new(root), id).map_err(oci_error)
}

/// `state`: the runtime-spec state JSON of a container.
pub fn oci_state(root: &Path, id: &str) -> Result<serde_json::Value> {
    let root = oci::Root::new(root);
    let rec = root.load(id).map_err(oci_error)?;
    Ok(oci::state_json(&root, &rec))
}

/// `kill [--all]`: a signal (name or number) to the init, or to every process.
pub fn oci_kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<()> {
    oci::kill(&oci::Root::new(root), id, signal, all).map_err(oci_error)
}

/// `delete [--force]`: removes a stopped (or created; with `force`, any) container.
pub fn oci_delete(root: &Path, id: &str, force: bool) -> Result<()> {
    oci::delete(&oci::Root::new(root), id, force).map_err(oci_error)
}

/// `run [--detach]`: create and start; in the foreground, wait for the
/// init, delete, and return its exit status.
pub fn oci_run(
    root: &Path,
    cfg: &Config,
    id: &str,
    opts: &OciCreateOptions,
    detach: bool,
) -> Result<i32> {
    let root = oci::Root::new(root);
    if detach {
        oci::create(&root, cfg, id, opts).map_err(oci_error)?;
        oci::start(&root, id).map_err(oci_error)?;
        return Ok(0);
    }
    oci::run(&root, cfg, id, opts).map_err(oci_error)
}

/// `exec`: a process in a running container; its exit status, or 0 once
/// started with `detach`.
pub fn oci_exec(root: &Path, opts: &OciExecOptions) -> Result<i32> {
    oci::exec::exec(&oci::Root::new(root), opts).map_err(oci_error)
}

/// `ps`: the host pids of a container's processes.
pub fn oci_ps(root: &Path, id: &str) -> Result<Vec<i32>> {
    oci::ps(&oci::Root::new(root), id).map_err(oci_error)
}

/// `pause`: freezes a running container (cgroup v2 freezer).
pub fn oci_pause(root: &Path, id: &str) -> Result<()> {
    oci::pause_resume(&oci::Root::new(root), id, true).map_err(oci_error)
}

/// `resume`: thaws a paused container.
pub fn oci_resume(root: &Path, id: &str) -> Result<()> {
    oci::pause_resume(&oci::Root::new(root), id, false).map_err(oci_error)
}

/// `spec [--rootless]`: writes runc's default config.json into `bundle`.
pub fn oci_spec(bundle: &Path, rootless: bool) -> Result<()> {
    oci::spec::write(bundle, rootless).map_err(oci_error)
}

/// `features`: the runtime-spec features JSON.
pub fn oci_features() -> serde_json::Value {
    oci::features()
}

fn state(cfg: &Config) -> StateDir {
    StateDir::new(&cfg.state_dir, &cfg.data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `oci/` passes on from the host side keeps its variant (the
    /// child's 127 reaches runc's front end, which podman reads); its own
    /// failures are their sentence, 125.
    #[test]
    fn oci_errors_keep_the_host_side_variant() {
        let child = oci::Error::from(parent::Error::Child {
            code: exit::NOT_FOUND,
            message: "cannot find x in PATH".into(),
        });
        let err = oci_error(child);
        assert!(
            matches!(&err, Error::Parent(parent::Error::Child { code: 127, .. })),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), exit::NOT_FOUND);
        assert_eq!(err.to_string(), "cannot find x in PATH");
        let own = oci::Error::from(anyhow::anyhow!("bad bundle").context("cannot create c1"));
        let err = oci_error(own);
        assert!(
            matches!(&err, Error::Engine(m) if m == "cannot create c1: bad bundle"),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), exit::ENGINE_ERROR);
    }
}
