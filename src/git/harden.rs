//! The hardening every git invocation gets (used only by [`super::Git::command`]): the fixed
//! `-c` config and environment that keep hooks, fsmonitor, ssh, credential helpers, editors,
//! pagers and attribute files out, the empty tree attributes are read from, and the overrides
//! that empty every filter and merge driver a repository's config defines.
//!
//! It must never return a value that lets git run a program named by the repository.

/// Config passed to every invocation, before the caller's arguments: nothing the repository
/// (or an agent writing into it) configures may make git run a program; and no automatic
/// maintenance or gc: a tick killed mid-maintenance would leave `objects/maintenance.lock`
/// behind, after which git silently skips maintenance in the user's repository.
pub(super) const FIXED_CONFIG: [&str; 13] = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgsign=false",
    "tag.gpgSign=false",
    "core.sshCommand=false",
    "credential.helper=",
    "core.askPass=",
    "core.editor=:",
    "sequence.editor=:",
    "core.pager=cat",
    "core.attributesFile=/dev/null",
    "maintenance.auto=false",
    "gc.auto=0",
];

/// Variables set on every invocation: no system config, no system attributes file.
pub(super) const FIXED_ENV: [(&str, &str); 4] = [
    ("LC_ALL", "C"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_ATTR_NOSYSTEM", "1"),
];

/// Subcommands that never convert content, check out or merge, so they need no scan of the
/// repository's filter and merge drivers (everything else gets one).
pub(super) const CONVERSION_FREE: [&str; 15] = [
    "fast-import",
    "rev-parse",
    "ls-tree",
    "update-ref",
    "cat-file",
    "commit-tree",
    "mktree",
    "for-each-ref",
    "symbolic-ref",
    "show-ref",
    "config",
    "merge-base",
    "rev-list",
    "ls-files",
    "var",
];

/// The empty tree, by object format: attributes are read from it, i.e. from nowhere.
pub(super) const EMPTY_TREE_SHA1: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
pub(super) const EMPTY_TREE_SHA256: &str =
    "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321";

/// `-c` overrides emptying every `filter.<x>` and `merge.<x>` driver named in `keys` (the
/// NUL-separated output of `git config --name-only -z --get-regexp`).
pub(super) fn overrides_for(text: &str) -> Vec<String> {
    let mut drivers: Vec<(bool, String)> = text
        .split('\0')
        .filter_map(|key| {
            let (section, rest) = key.split_once('.')?;
            let (name, _) = rest.rsplit_once('.')?;
            Some((section == "filter", name.to_owned()))
        })
        .collect();
    drivers.sort();
    drivers.dedup();
    drivers
        .into_iter()
        .flat_map(|(filter, name)| {
            if filter {
                ["clean=", "smudge=", "process=", "required=false"]
                    .iter()
                    .map(|k| format!("filter.{name}.{k}"))
                    .collect::<Vec<_>>()
            } else {
                vec![format!("merge.{name}.driver=false")]
            }
        })
        .collect()
}

/// The subcommand in `args` (after any `-C <dir>` / `-c <key=value>` pairs).
pub(super) fn subcommand<'a>(args: &[&'a str]) -> Option<&'a str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "-C" | "-c" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => return Some(s),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommand_skips_global_options() {
        assert_eq!(subcommand(&["-C", "d", "-c", "a=b", "log"]), Some("log"));
        assert_eq!(subcommand(&["--no-pager", "add"]), Some("add"));
        assert_eq!(subcommand(&[]), None);
    }

    #[test]
    fn every_filter_and_merge_driver_is_emptied() {
        let keys = "filter.lfs.clean\0filter.lfs.smudge\0merge.ours.driver\0filter.a.b.process\0";
        assert_eq!(
            overrides_for(keys),
            [
                "merge.ours.driver=false",
                "filter.a.b.clean=",
                "filter.a.b.smudge=",
                "filter.a.b.process=",
                "filter.a.b.required=false",
                "filter.lfs.clean=",
                "filter.lfs.smudge=",
                "filter.lfs.process=",
                "filter.lfs.required=false",
            ]
        );
    }
}
