//! `-u USER[:GROUP]` (docker's `--user`): the words checked here, the
//! names resolved against the container's own /etc/passwd and /etc/group
//! as runc's `GetExecUser` does. Reading those files is the caller's
//! (inside the container, bounded, never following a link out); this
//! file only parses text.

use crate::model::bundle::User;

/// A user or a group as given: a name, or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Name(String),
    Number(u32),
}

/// `-u USER[:GROUP]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub user: Id,
    pub group: Option<Id>,
}

/// A `-u` refused, or a name the container's files do not hold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid --user {0:?}: use USER, USER:GROUP, UID or UID:GID")]
    Form(String),
    #[error(
        "no user {0:?} in the container's /etc/passwd: give a name it lists, or a numeric UID"
    )]
    NoUser(String),
    #[error(
        "no group {0:?} in the container's /etc/group: give a name it lists, or a numeric GID"
    )]
    NoGroup(String),
}

fn id(word: &str) -> Option<Id> {
    if word.is_empty() || word.contains(['\0', '\n', ':']) {
        return None;
    }
    Some(match word.parse::<u32>() {
        // -1 is no ID to the kernel (setresuid's "unchanged").
        Ok(n) if n != u32::MAX => Id::Number(n),
        Ok(_) => return None,
        Err(_) if word.bytes().all(|b| b.is_ascii_digit()) => return None,
        Err(_) => Id::Name(word.to_string()),
    })
}

pub fn parse_user(given: &str) -> Result<UserSpec, Error> {
    let bad = || Error::Form(given.into());
    let (user, group) = match given.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (given, None),
    };
    Ok(UserSpec {
        user: id(user).ok_or_else(bad)?,
        group: group.map(|g| id(g).ok_or_else(bad)).transpose()?,
    })
}

/// One line of /etc/passwd or /etc/group split at its colons; None for a
/// comment, a blank or a short line (runc skips them).
fn fields(line: &str, at_least: usize) -> Option<Vec<&str>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let f: Vec<&str> = line.split(':').collect();
    (f.len() >= at_least).then_some(f)
}

/// Who runs the process, and its home directory (for HOME): `spec`
/// resolved in `passwd` and `group` (the container's files; empty when
/// missing). A numeric user not in passwd runs with gid 0 and home `/`;
/// a name must be there. A GROUP replaces the primary group; without
/// one, the groups that list the user's name are the supplementary ones.
pub fn resolve(spec: &UserSpec, passwd: &str, group: &str) -> Result<(User, String), Error> {
    let entry = passwd
        .lines()
        .filter_map(|l| fields(l, 7))
        .find(|f| match &spec.user {
            Id::Name(n) => f[0] == n,
            Id::Number(n) => f[2].parse::<u32>().ok() == Some(*n),
        });
    let (uid, mut gid, name, home) = match (&spec.user, entry) {
        (_, Some(f)) => (
            f[2].parse::<u32>()
                .map_err(|_| Error::NoUser(f[0].to_string()))?,
            f[3].parse::<u32>().unwrap_or(0),
            Some(f[0].to_string()),
            f[5].to_string(),
        ),
        (Id::Number(n), None) => (*n, 0, None, "/".to_string()),
        (Id::Name(n), None) => return Err(Error::NoUser(n.clone())),
    };
    let groups = group.lines().filter_map(|l| fields(l, 4));
    let mut additional_gids = Vec::new();
    match &spec.group {
        Some(Id::Number(n)) => gid = *n,
        Some(Id::Name(g)) => {
            gid = groups
                .clone()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse::<u32>().ok())
                .ok_or_else(|| Error::NoGroup(g.clone()))?
        }
        None => {
            if let Some(name) = &name {
                additional_gids = groups
                    .filter(|f| f[3].split(',').any(|m| m.trim() == name))
                    .filter_map(|f| f[2].parse::<u32>().ok())
                    .collect();
            }
        }
    }
    let user = User {
        uid,
        gid,
        additional_gids,
        umask: None,
    };
    Ok((user, home))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\nweb:x:1000:1001:web:/home/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nweb:x:1001:\nstaff:x:50:web,other\nwheel:x:10:other\n";

    fn user(given: &str) -> Result<(User, String), Error> {
        resolve(&parse_user(given)?, PASSWD, GROUP)
    }

    #[test]
    fn user_words() {
        assert_eq!(
            parse_user("web:staff").unwrap(),
            UserSpec {
                user: Id::Name("web".into()),
                group: Some(Id::Name("staff".into()))
            }
        );
        assert_eq!(parse_user("7").unwrap().user, Id::Number(7));
        for bad in [
            "",
            ":",
            "web:",
            ":g",
            "a:b:c",
            "4294967295",
            "99999999999",
            "a\0",
        ] {
            assert_eq!(parse_user(bad), Err(Error::Form(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn names_resolve_as_runc_resolves_them() {
        let (u, home) = user("web").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids, home.as_str()),
            (1000, 1001, vec![50], "/home/web")
        );
        let (u, _) = user("1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1001));
        let (u, _) = user("web:staff").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 50, vec![]));
        let (u, home) = user("4242:7").unwrap();
        assert_eq!((u.uid, u.gid, home.as_str()), (4242, 7, "/"));
        let (u, _) = user("4242").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert_eq!(user("nobody"), Err(Error::NoUser("nobody".into())));
        assert_eq!(user("web:nogroup"), Err(Error::NoGroup("nogroup".into())));
        // No files at all: numbers only.
        assert_eq!(
            resolve(&parse_user("5:6").unwrap(), "", "").unwrap().0.gid,
            6
        );
    }
}
