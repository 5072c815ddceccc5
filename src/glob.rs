//! Glob matching for `protected:` patterns, with `globset`'s syntax: `*` and `?` within a path
//! segment, `**` for any number of segments, `{a,b}` alternatives, `[...]` classes and `\`
//! escapes. Patterns are anchored at the worktree root (`*.md` is `README.md`, not
//! `docs/README.md`; write `**/*.md` for every depth); a pattern ending in `/` matches
//! everything below that directory. [`check`] refuses a pattern that cannot compile, so no
//! pattern silently matches nothing.

/// The pattern as compiled: `./` dropped, a trailing `/` meaning "everything below".
fn normalise(pattern: &str) -> String {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    match pattern.strip_suffix('/') {
        Some(dir) => format!("{dir}/**"),
        None => pattern.to_owned(),
    }
}

fn compile(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(&normalise(pattern))
        .literal_separator(true)
        .backslash_escape(true)
        .build()?
        .compile_matcher())
}

/// Checks that `pattern` compiles.
///
/// # Errors
/// The reason it does not (an unclosed `[` or `{`, a dangling escape, …).
pub fn check(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("the pattern is empty".into());
    }
    compile(pattern)
        .map(|_| ())
        .map_err(|e| e.kind().to_string())
}

/// True when `path` matches `pattern` (each pattern is compiled once per thread). A pattern
/// that does not compile matches nothing here; patterns are refused by [`check`] where they
/// enter (`add-stage`).
#[must_use]
pub fn matches(pattern: &str, path: &str) -> bool {
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, Option<globset::GlobMatcher>>> =
            std::cell::RefCell::default();
    }
    COMPILED.with(|c| {
        c.borrow_mut()
            .entry(pattern.to_owned())
            .or_insert_with(|| compile(pattern).ok())
            .as_ref()
            .is_some_and(|m| m.is_match(path))
    })
}

/// The fixed directory prefix of a pattern (the part before any wildcard), used to decide
/// which directories to walk.
#[must_use]
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len());
    match pattern[..end].rfind('/') {
        Some(i) => &pattern[..i],
        None if end == pattern.len() => pattern,
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("tests/golden/**", "tests/golden/a/b.txt"));
        assert!(matches("tests/golden/", "tests/golden/a.txt"));
        assert!(matches("*.md", "README.md"));
        assert!(!matches("*.md", "docs/README.md"));
        assert!(matches("**/*.md", "docs/README.md"));
        assert!(matches("**/*.md", "README.md"));
        assert!(matches("src/?.rs", "src/a.rs"));
        assert!(!matches("src/?.rs", "src/ab.rs"));
        assert!(matches("nightshift.yaml", "nightshift.yaml"));
        assert!(!matches("state/**", "stateful/x"));
    }

    /// Regression: braces and classes were accepted but matched nothing, so an edit to a
    /// protected file passed the gate.
    #[test]
    fn braces_classes_and_escapes() {
        assert!(matches("*.{txt,md}", "a.txt"));
        assert!(matches("*.{txt,md}", "b.md"));
        assert!(!matches("*.{txt,md}", "c.rs"));
        assert!(matches("[ab].txt", "a.txt"));
        assert!(!matches("[ab].txt", "c.txt"));
        assert!(matches("[!ab].txt", "c.txt"));
        assert!(matches("lit\\*.txt", "lit*.txt"));
        assert!(!matches("lit\\*.txt", "litx.txt"));
        assert!(matches("docs/**/*.{md,txt}", "docs/a/b/c.md"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(check("[ab.txt").is_err());
        assert!(check("{a,b.txt").is_err());
        assert!(check("").is_err());
        assert!(check("src/**/*.rs").is_ok());
    }

    #[test]
    fn prefixes() {
        assert_eq!(literal_prefix("tests/golden/**"), "tests/golden");
        assert_eq!(literal_prefix("*.md"), "");
        assert_eq!(literal_prefix("nightshift.yaml"), "nightshift.yaml");
        assert_eq!(literal_prefix("a/b*/c"), "a");
        assert_eq!(literal_prefix("docs/{a,b}/x"), "docs");
        assert_eq!(literal_prefix("t/[ab].txt"), "t");
    }
}
