//! Downloads over http(s) (ureq) or from `file://`, with a progress bar and a
//! sha256 of every byte, streamed straight into the unpacker.

use super::staging::{check_interrupted, Interruptible};
use super::unpack::unpack_stream;
use super::PullOptions;
use anyhow::{anyhow, bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) fn fetch(
    url: &str,
    root: &Path,
    digest: Option<&str>,
    opts: &PullOptions,
) -> Result<(), super::Error> {
    let (body, length) = open_url(url)?;
    let bar = progress_bar(opts.progress, length, url);
    let mut download = Download {
        body: Interruptible(body),
        length,
        read: 0,
        ended: false,
        error: None,
        hasher: Sha256::new(),
        bar,
    };
    let unpacked = unpack_stream(&mut download, url, root, opts.owner);
    if let Some(bar) = &download.bar {
        bar.finish_and_clear();
    }
    // A signal, then a short or failed transfer explain most unpack errors.
    check_interrupted()?;
    Ok(verify(download, url, digest, unpacked)?)
}

/// After the transfer: the whole body came, it unpacked, its digest matches.
fn verify(download: Download, url: &str, digest: Option<&str>, unpacked: Result<()>) -> Result<()> {
    let ended = download.ended || download.error.is_some();
    if let Some(expected) = download.length.filter(|&n| ended && download.read < n) {
        bail!(
            "download of {url} was cut short after {} bytes (expected {expected})",
            download.read
        );
    }
    if let Some(error) = &download.error {
        bail!(
            "download of {url} failed after {} bytes: {error}",
            download.read
        );
    }
    unpacked?;
    let got = format!("{:x}", download.hasher.finalize());
    match digest {
        Some(want) if want != got => bail!("sha256 mismatch for {url}: expected {want}, got {got}"),
        _ => Ok(()),
    }
}

type Body = Box<dyn Read + Send>;

/// The body of `url` and its length when known.
fn open_url(url: &str) -> Result<(Body, Option<u64>)> {
    if let Some(rest) = url.strip_prefix("file://") {
        let path = file_url_path(rest)
            .ok_or_else(|| anyhow!("{url} is not a file:///ABSOLUTE/PATH URL"))?;
        let file = File::open(&path).map_err(|e| anyhow!("cannot read {url}: {e}"))?;
        let length = file
            .metadata()
            .map_err(|e| anyhow!("cannot read {url}: {e}"))?
            .len();
        return Ok((Box::new(file), Some(length)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("engine/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| anyhow!("cannot download {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "HTTP {} {} from {url}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
    }
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    Ok((Box::new(response.into_body().into_reader()), length))
}

/// The path of a `file://` URL (after the scheme): `/abs/path` or
/// `localhost/abs/path`, percent-decoded.
pub(super) fn file_url_path(rest: &str) -> Option<PathBuf> {
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

fn progress_bar(enabled: bool, length: Option<u64>, url: &str) -> Option<ProgressBar> {
    if !enabled || !io::stderr().is_terminal() {
        return None;
    }
    let (bar, template) = match length {
        Some(n) => (
            ProgressBar::new(n),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {bytes_per_sec}",
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    Some(bar)
}

/// The raw download: counts and hashes every byte, remembers a failure.
struct Download {
    body: Interruptible<Body>,
    length: Option<u64>,
    read: u64,
    /// The body reached its end (a read returned 0).
    ended: bool,
    error: Option<String>,
    hasher: Sha256,
    bar: Option<ProgressBar>,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.body.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.read += n as u64;
                self.ended |= n == 0 && !buf.is_empty();
                if let Some(bar) = &self.bar {
                    bar.inc(n as u64);
                }
                Ok(n)
            }
            Err(e) => {
                self.error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_decoded() {
        assert_eq!(
            file_url_path("/a%20b/c.tar").unwrap(),
            PathBuf::from("/a b/c.tar")
        );
        assert_eq!(file_url_path("localhost/x").unwrap(), PathBuf::from("/x"));
        assert!(file_url_path("relative/x").is_none());
        assert!(file_url_path("/bad%zz").is_none());
        assert!(file_url_path("/bad%+1").is_none());
    }
}
