//! Minimal glob matching for `protected:` patterns: `*` (within a path segment), `**` (any
//! number of segments), `?` (one character). Paths are `/`-separated and relative to the
//! worktree root. A pattern ending in `/` matches everything below that directory.

/// True when `path` matches `pattern`.
#[must_use]
pub fn matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    let owned;
    let pattern = if let Some(dir) = pattern.strip_suffix('/') {
        owned = format!("{dir}/**");
        owned.as_str()
    } else {
        pattern
    };
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|i| match_segments(rest, &segs[i..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => {
                match_one(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest)
            }
            None => false,
        },
    }
}

fn match_one(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_one(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && match_one(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && match_one(rest, &s[1..]),
    }
}

/// The fixed directory prefix of a pattern (the part before any wildcard), used to decide
/// which directories to walk.
#[must_use]
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?']).unwrap_or(pattern.len());
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

    #[test]
    fn prefixes() {
        assert_eq!(literal_prefix("tests/golden/**"), "tests/golden");
        assert_eq!(literal_prefix("*.md"), "");
        assert_eq!(literal_prefix("nightshift.yaml"), "nightshift.yaml");
        assert_eq!(literal_prefix("a/b*/c"), "a");
    }
}
