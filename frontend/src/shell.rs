//! Shell-word expansion as BuildKit's Dockerfile shell lexer does it: `$VAR`, `${VAR}`, the
//! `${VAR:-word}` family, the pattern modifiers (`#`, `##`, `%`, `%%`, `/`, `//`), quotes and
//! escapes, and splitting into words after expansion.
//!
//! The lexer works on `char`s and never indexes out of bounds; every malformed input is a
//! [`ShellError`] with BuildKit's message.

/// How deeply `${…}` substitutions may nest (`${a:-${b:-…}}`): each level is a recursion
/// of the lexer, so hostile input must not choose the depth. Real Dockerfiles nest two or
/// three levels.
pub const MAX_NESTING: usize = 100;

/// Why a word could not be expanded; the messages are BuildKit's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    /// The word ended inside a construct that `stop` closes.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unmatched(char),
    /// An unterminated `'…`.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnmatchedSingleQuote,
    /// An unterminated `"…`.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnmatchedDoubleQuote,
    /// More than [`MAX_NESTING`] `${` open at once.
    #[error("variable substitutions nested deeper than {MAX_NESTING}")]
    TooDeep,
    /// `${` without its `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${v/pat` without the `/` before the replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${{`, `${:`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier the shell lexer does not know (`${v:#x}`, `${v!}`).
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${v?msg}` / `${v:?msg}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The word after `?`, or the default message.
        message: String,
    },
    /// A heredoc name the two lexing passes split differently.
    #[error("internal lexing of heredoc produced inconsistent results: {0}")]
    InconsistentHeredoc(String),
    /// Any of the above, with the start of the word it happened in (a hostile word can be
    /// megabytes long: only its first 200 characters are kept).
    #[error("failed to process {word:?}{ellipsis}: {cause}")]
    Process {
        /// The word's start.
        word: String,
        /// `…` when the word was cut.
        ellipsis: &'static str,
        /// What went wrong.
        cause: Box<ShellError>,
    },
}

/// Lexer options.
#[derive(Clone, Copy, Debug)]
pub struct Lexer {
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
    /// Keep quote characters in the output (used to find heredoc names).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

impl Lexer {
    /// A lexer with the given escape character and BuildKit's default options.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` into one string (spaces between words kept).
    pub fn process_word(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ShellError> {
        self.process(word, env).map(|(w, _)| w)
    }

    /// Expands `word` and splits the result into words (quotes keep spaces).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ShellError> {
        self.process(word, env).map(|(_, ws)| ws)
    }

    fn process(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Vec<String>), ShellError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            lex: *self,
            env,
            raw_escapes: self.raw_escapes,
            depth: 0,
        };
        sw.process_stop_on(None, self.raw_escapes).map_err(|e| {
            // A hostile word can be megabytes long: the message quotes its start only.
            let shown: String = word.chars().take(200).collect();
            let ellipsis = if shown.len() < word.len() { "…" } else { "" };
            ShellError::Process {
                word: shown,
                ellipsis,
                cause: Box::new(e),
            }
        })
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    lex: Lexer,
    env: &'a dyn Fn(&str) -> Option<String>,
    raw_escapes: bool,
    /// `${` levels open now.
    depth: usize,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn get_words(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    /// A word up to `stop`; when the input ends first, the error is `missing` (the lexer's
    /// own error otherwise).
    fn word_until(
        &mut self,
        stop: char,
        raw_escapes: bool,
        missing: ShellError,
    ) -> Result<String, ShellError> {
        match self.process_stop_on(Some(stop), raw_escapes) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(missing),
            Err(e) => Err(e),
        }
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.get_words()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '\'' => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' => {
                    let tmp = self.process_double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => {
                                words.add_raw_char(c);
                                result.push(c);
                            }
                        }
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(s) = stop {
            return Err(ShellError::Unmatched(s));
        }
        Ok((result, words.get_words()))
    }

    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::UnmatchedSingleQuote),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ShellError> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnmatchedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn process_dollar(&mut self) -> Result<String, ShellError> {
        if self.depth >= MAX_NESTING {
            return Err(ShellError::TooDeep);
        }
        self.depth += 1;
        let r = self.process_dollar_inner();
        self.depth -= 1;
        r
    }

    fn process_dollar_inner(&mut self) -> Result<String, ShellError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            _ => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(ShellError::MissingBrace);
        };
        let mut chs = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if ch == ':' {
                    null_is_unset = true;
                    let Some(c) = self.next() else {
                        return Err(ShellError::MissingBrace);
                    };
                    ch = c;
                    chs.push(c);
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(ShellError::UnsupportedModifier(chs));
                }
                let word = self.word_until('}', raw, ShellError::MissingBrace)?;
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let set = value.is_some();
                let value = value.unwrap_or_default();
                match ch {
                    '-' => {
                        if !set || (null_is_unset && value.is_empty()) {
                            Ok(word)
                        } else {
                            Ok(value)
                        }
                    }
                    '+' => {
                        if !set || (null_is_unset && value.is_empty()) {
                            Ok(String::new())
                        } else {
                            Ok(word)
                        }
                    }
                    '?' => {
                        if !set {
                            let message = if word.is_empty() {
                                "is not allowed to be unset".to_string()
                            } else {
                                word
                            };
                            return Err(ShellError::Required { name, message });
                        }
                        if null_is_unset && value.is_empty() {
                            let message = if word.is_empty() {
                                "is not allowed to be empty".to_string()
                            } else {
                                word
                            };
                            return Err(ShellError::Required { name, message });
                        }
                        Ok(value)
                    }
                    '#' | '%' => {
                        let mut pat: Vec<char> = word.chars().collect();
                        let greedy = pat.first() == Some(&ch);
                        if greedy {
                            pat.remove(0);
                        }
                        Ok(trim_pattern(&value, &pat, ch == '#', greedy))
                    }
                    _ => Err(ShellError::UnsupportedModifier(chs)),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = self.word_until('/', true, ShellError::MissingSlash)?;
                let repl = self.word_until('}', true, ShellError::MissingBrace)?;
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{repl}}}"));
                }
                let pat: Vec<char> = pattern.chars().collect();
                Ok(replace_pattern(
                    &value.unwrap_or_default(),
                    &pat,
                    &repl,
                    all,
                ))
            }
            _ => Err(ShellError::UnsupportedModifier(chs)),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(c) = self.peek() {
                    if !c.is_ascii_digit() {
                        break;
                    }
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// Matches `s` against a shell glob pattern (`*`, `?`, `[...]`, `\x`), whole string: the
/// patterns of `${v#pat}`, `${v%pat}` and `${v/pat/repl}`.
///
/// This is not `kiln_opgraph::pattern::glob_match` (Go's `filepath.Match`, used for
/// `.dockerignore` and `COPY --exclude`), and `globset` fits neither. Here the pattern
/// matches a whole value on characters, `*` crosses `/` and an unclosed `[` is a literal
/// (BuildKit's lexer turns the pattern into a regular expression); `filepath.Match` is applied
/// to one path component at a time, on bytes, and a malformed class matches nothing. One
/// matcher for both would change what one of them matches.
pub fn glob_match(pat: &[char], s: &[char]) -> bool {
    // Iterative matcher with backtracking on the last `*`.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pat.len() {
            match pat[p] {
                '*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                c => {
                    if i < s.len() {
                        if let Some(np) = match_one(pat, p, c, s[i]) {
                            p = np;
                            i += 1;
                            continue;
                        }
                    }
                }
            }
        } else if i == s.len() {
            return true;
        }
        match star {
            Some((sp, si)) if si < s.len() => {
                star = Some((sp, si + 1));
                p = sp + 1;
                i = si + 1;
            }
            _ => return false,
        }
    }
}

/// Matches one pattern element at `pat[p]` (already `c`) against `ch`; returns the next
/// pattern index on success.
fn match_one(pat: &[char], p: usize, c: char, ch: char) -> Option<usize> {
    match c {
        '?' => Some(p + 1),
        '\\' => match pat.get(p + 1) {
            Some(&e) if e == ch => Some(p + 2),
            Some(_) => None,
            None => (ch == '\\').then_some(p + 1),
        },
        '[' => {
            let mut q = p + 1;
            let negate = matches!(pat.get(q), Some('!' | '^'));
            if negate {
                q += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let Some(&pc) = pat.get(q) else {
                    // No closing bracket: `[` is literal.
                    return (ch == '[').then_some(p + 1);
                };
                if pc == ']' && !first {
                    break;
                }
                first = false;
                let lo = if pc == '\\' {
                    q += 1;
                    *pat.get(q)?
                } else {
                    pc
                };
                if pat.get(q + 1) == Some(&'-') && pat.get(q + 2).is_some_and(|&x| x != ']') {
                    let hi = pat[q + 2];
                    if lo <= ch && ch <= hi {
                        matched = true;
                    }
                    q += 3;
                } else {
                    if lo == ch {
                        matched = true;
                    }
                    q += 1;
                }
            }
            (matched != negate).then_some(q + 1)
        }
        _ => (c == ch).then_some(p + 1),
    }
}

fn trim_pattern(value: &str, pat: &[char], prefix: bool, greedy: bool) -> String {
    let v: Vec<char> = value.chars().collect();
    let n = v.len();
    let lens: Box<dyn Iterator<Item = usize>> = if greedy {
        Box::new((0..=n).rev())
    } else {
        Box::new(0..=n)
    };
    for l in lens {
        let (part, rest) = if prefix {
            (&v[..l], &v[l..])
        } else {
            (&v[n - l..], &v[..n - l])
        };
        if glob_match(pat, part) {
            return rest.iter().collect();
        }
    }
    value.to_string()
}

fn replace_pattern(value: &str, pat: &[char], repl: &str, all: bool) -> String {
    let v: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < v.len() {
        if !replaced || all {
            // Longest match starting at i.
            let mut found = None;
            for end in (i + 1..=v.len()).rev() {
                if glob_match(pat, &v[i..end]) {
                    found = Some(end);
                    break;
                }
            }
            if let Some(end) = found {
                out.push_str(repl);
                i = end;
                replaced = true;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "PWD" => Some("/home".into()),
            "EMPTY" => Some(String::new()),
            "P" => Some("a/b/c.tar.gz".into()),
            _ => None,
        }
    }

    /// Issue 11, item 6: deep nesting is an error, not a stack overflow, on a 2 MiB stack.
    #[test]
    fn deep_nesting_is_an_error() {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let lex = Lexer::new('\\');
                let ok = format!(
                    "{}x{}",
                    "${a:-".repeat(MAX_NESTING),
                    "}".repeat(MAX_NESTING)
                );
                assert_eq!(lex.process_word(&ok, &env).unwrap(), "x");
                let n = 10_000;
                let deep = format!("{}x{}", "${a:-".repeat(n), "}".repeat(n));
                let e = lex.process_word(&deep, &env).unwrap_err().to_string();
                assert!(
                    e.ends_with("variable substitutions nested deeper than 100"),
                    "{e}"
                );
                let quoted = "\"${a:-".repeat(n);
                assert!(lex
                    .process_word(&quoted, &env)
                    .unwrap_err()
                    .to_string()
                    .contains("nested deeper"));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn basic_and_modifiers() {
        let l = Lexer::new('\\');
        assert_eq!(l.process_word("he${PWD}x", &env).unwrap(), "he/homex");
        assert_eq!(
            l.process_word("${X-a}${EMPTY-b}${EMPTY:-c}", &env).unwrap(),
            "ac"
        );
        assert_eq!(l.process_word("${P#*/}", &env).unwrap(), "b/c.tar.gz");
        assert_eq!(l.process_word("${P##*/}", &env).unwrap(), "c.tar.gz");
        assert_eq!(l.process_word("${P%.*}", &env).unwrap(), "a/b/c.tar");
        assert_eq!(l.process_word("${P%%.*}", &env).unwrap(), "a/b/c");
        assert_eq!(l.process_word("${P/\\//_}", &env).unwrap(), "a_b/c.tar.gz");
        assert_eq!(l.process_word("${P//\\//_}", &env).unwrap(), "a_b_c.tar.gz");
        assert!(l
            .process_word("${X:?oops}", &env)
            .unwrap_err()
            .to_string()
            .contains("oops"));
    }

    #[test]
    fn skip_unset_and_raw() {
        let l = Lexer {
            raw_quotes: true,
            raw_escapes: true,
            skip_unset_env: true,
            escape: '\\',
        };
        assert_eq!(
            l.process_words("cat <<\"EOF\" $X", &env).unwrap(),
            ["cat", "<<\"EOF\"", "$X"]
        );
    }
}
