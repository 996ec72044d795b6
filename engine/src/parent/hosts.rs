//! Names on the bridge, with no daemon: every running bridged container's
//! /etc/hosts holds a line for each of its peers (its name and
//! `--network-alias`es on its address), rewritten as containers start and
//! end. Each file is the engine's own, in the state directory
//! (`sys::net::dns::refresh_hosts`): a container can neither write it nor
//! point the engine elsewhere.

use super::record::Record;
use crate::sys::net::dns;
use crate::sys::state::{Entry, StateDir};

/// Rewrites the hosts file of every running bridged container of `state`
/// but `ending` (whose record is about to go) with the others' lines. The
/// caller holds the state lock, so no start or end interleaves. Best
/// effort: a file that cannot be written is said and the others are still
/// done.
pub(super) fn refresh_peers(state: &StateDir, ending: Option<&str>) {
    let running: Vec<Record> = state
        .list::<Record>()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Record(r)
                if !r.exited() && r.ip.is_some() && Some(r.name.as_str()) != ending =>
            {
                Some(*r)
            }
            _ => None,
        })
        .collect();
    for rec in &running {
        let peers: Vec<_> = running
            .iter()
            .filter(|p| p.name != rec.name)
            .filter_map(|p| {
                let names = std::iter::once(&p.name).chain(&p.aliases).cloned();
                Some((p.ip?, names.collect()))
            })
            .collect();
        if let Err(e) = dns::refresh_hosts(&state.etc_of(&rec.name), &peers) {
            eprintln!(
                "engine: the peers of {} are not in its /etc/hosts: {e}",
                rec.name
            );
        }
    }
}
