//! `.dockerignore` patterns with Docker's semantics (moby/patternmatcher): Go `filepath.Match`
//! per path component, `**` for any number of components, `!` exceptions where the last
//! matching pattern wins, leading `/` and `./` stripped, and a directory match covering
//! everything below it.
//!
//! Pure logic, no I/O: both the frontend (to explain "excluded by .dockerignore") and the
//! worker (to decide what a build sees) use it.

/// A compiled list of `.dockerignore` patterns.
#[derive(Clone, Debug, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    exclusion: bool,
    /// Cleaned pattern split on `/`.
    parts: Vec<String>,
}

/// Parses the text of a `.dockerignore` file into pattern lines (comments and blank lines
/// dropped, white space trimmed), ready for [`PatternMatcher::new`].
pub fn parse_dockerignore(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

impl PatternMatcher {
    /// Compiles patterns.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let patterns = patterns
            .iter()
            .filter_map(|p| {
                let p = p.as_ref().trim();
                let (exclusion, p) = match p.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, p),
                };
                let cleaned = clean(p);
                if cleaned.is_empty() || cleaned == "." {
                    return None;
                }
                Some(Pattern {
                    exclusion,
                    parts: cleaned.split('/').map(str::to_string).collect(),
                })
            })
            .collect();
        Self { patterns }
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded. A path is
    /// excluded when the last pattern matching it or one of its parent directories is not
    /// an exception.
    pub fn is_excluded(&self, path: &str) -> bool {
        let cleaned = clean(path);
        let parts: Vec<&str> = cleaned.split('/').filter(|s| !s.is_empty()).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // Only a pattern that could flip the outcome matters.
            if p.exclusion != excluded {
                continue;
            }
            if matches_or_parent(&p.parts, &parts) {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether any exception pattern could re-include something below `dir` (so a walker must
    /// not skip an excluded directory wholesale).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

/// Go's `filepath.Clean` for relative slash paths, also dropping a leading `/` or `./`; a
/// `..` never climbs above the root.
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// Whether the pattern components match the path components or those of one of its
/// parents, `**` standing for any number of components. Iterative (one row of a table per
/// pattern component, O(pattern × path)): a `.dockerignore` line is written by strangers,
/// and a recursive matcher would recurse once per component and take exponential time on
/// `**/**/…`.
fn matches_or_parent(pat: &[String], path: &[&str]) -> bool {
    // row[j]: the pattern so far matches path[..j].
    let mut row = vec![false; path.len() + 1];
    row[0] = true;
    for p in pat {
        if p == "**" {
            let mut any = false;
            for m in &mut row {
                any |= *m;
                *m = any;
            }
        } else {
            for j in (1..=path.len()).rev() {
                row[j] = row[j - 1] && glob_match(p.as_bytes(), path[j - 1].as_bytes());
            }
            row[0] = false;
        }
        if !row.contains(&true) {
            return false;
        }
    }
    row[1..].contains(&true)
}

/// Go `filepath.Match` on one path component: `*`, `?`, `[...]` with ranges and `^`/`!`,
/// and `\` escapes.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star_p, mut star_i) = (usize::MAX, 0usize);
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star_p = p;
                    star_i = i;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, next)) = class_match(pat, p, s[i]) {
                        if ok {
                            p = next;
                            i += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pat.len() => {
                    if pat[p + 1] == s[i] {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[i] {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        if star_p != usize::MAX {
            p = star_p + 1;
            star_i += 1;
            i = star_i;
            continue;
        }
        return false;
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Matches `c` against the class starting at `pat[start] == '['`; returns (matched, index
/// after the class), or `None` for a malformed class.
fn class_match(pat: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = start + 1;
    let negate = j < pat.len() && (pat[j] == b'^' || pat[j] == b'!');
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() && (pat[j] != b']' || first) {
        first = false;
        let mut lo = pat[j];
        if lo == b'\\' && j + 1 < pat.len() {
            j += 1;
            lo = pat[j];
        }
        let mut hi = lo;
        if j + 2 < pat.len() && pat[j + 1] == b'-' && pat[j + 2] != b']' {
            hi = pat[j + 2];
            if hi == b'\\' && j + 3 < pat.len() {
                hi = pat[j + 3];
                j += 1;
            }
            j += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
        j += 1;
    }
    if j >= pat.len() {
        return None;
    }
    Some((matched != negate, j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_semantics() {
        let m = PatternMatcher::new(&["*.log", "!keep.log", "build/", "/secret", "**/*.tmp"]);
        assert!(m.is_excluded("a.log"));
        assert!(!m.is_excluded("keep.log"));
        assert!(!m.is_excluded("dir/a.log"), "* does not cross directories");
        assert!(m.is_excluded("build/x/y"));
        assert!(m.is_excluded("secret"));
        assert!(m.is_excluded("a/b/c.tmp"));
        assert!(m.is_excluded("c.tmp"));
        assert!(!m.is_excluded("src/main.rs"));
    }

    /// Issue 11, item 6: deep and `**`-heavy patterns on a 2 MiB stack, in linear time.
    #[test]
    fn deep_patterns_match_without_recursion() {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let deep = vec!["a"; 3_000].join("/");
                let m = PatternMatcher::new(&[deep.as_str()]);
                assert!(m.is_excluded(&deep));
                assert!(m.is_excluded(&(deep.clone() + "/below")));
                assert!(!m.is_excluded(&vec!["a"; 2_999].join("/")));
                let stars = vec!["**"; 200].join("/") + "/x";
                let m = PatternMatcher::new(&[stars.as_str()]);
                assert!(m.is_excluded(&(vec!["a"; 200].join("/") + "/x")));
                assert!(!m.is_excluded(&vec!["a"; 200].join("/")));
                assert!(PatternMatcher::new(&["a/**/b/**"]).is_excluded("a/b"));
                assert!(PatternMatcher::new(&["a/**/b"]).is_excluded("a/x/y/b"));
                assert!(!PatternMatcher::new(&["a/**/b"]).is_excluded("x/a/b"));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn last_match_wins() {
        let m = PatternMatcher::new(&["!a", "a"]);
        assert!(m.is_excluded("a"));
        let m = PatternMatcher::new(&["docs", "!docs/README.md"]);
        assert!(m.is_excluded("docs/other"));
        assert!(!m.is_excluded("docs/README.md"));
    }

    #[test]
    fn glob_classes() {
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[^a-c]x", b"bx"));
        assert!(glob_match(b"f?o*", b"foobar"));
        assert!(glob_match(b"\\*", b"*"));
        assert!(!glob_match(b"\\*", b"a"));
    }
}
