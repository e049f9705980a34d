//! Detach keys: docker's `--detach-keys` syntax and the matching of the sequence on the
//! attached client's input.

/// Docker's default: `ctrl-p,ctrl-q`.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// `--detach-keys` that docker would refuse (its message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid detach keys ({0}) provided")]
pub struct DetachKeysError(pub String);

/// A detach sequence and how much of it was typed so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachKeys {
    keys: Vec<u8>,
    matched: usize,
}

impl Default for DetachKeys {
    fn default() -> Self {
        DetachKeys::default_keys()
    }
}

impl DetachKeys {
    /// Parses docker's syntax: comma-separated keys, each one character (`a`, `Q`, `@`…) or
    /// `ctrl-` and one of `@`, `a`-`z`, `[`, `\`, `]`, `^`, `_` (as docker's
    /// `term.ToBytes`). An empty string is refused.
    ///
    /// # Errors
    ///
    /// A key that is neither, in docker's words.
    pub fn parse(spec: &str) -> Result<DetachKeys, DetachKeysError> {
        let bad = || DetachKeysError(spec.to_string());
        let mut keys = Vec::new();
        for key in spec.split(',') {
            let key_bytes = key.as_bytes();
            if let [b] = key_bytes {
                keys.push(*b);
                continue;
            }
            let Some(&[c]) = key.strip_prefix("ctrl-").map(str::as_bytes) else {
                return Err(bad());
            };
            let code = match c {
                b'@' => 0,
                b'a'..=b'z' => c - b'a' + 1,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            };
            keys.push(code);
        }
        Ok(DetachKeys { keys, matched: 0 })
    }

    /// `ctrl-p,ctrl-q`.
    #[must_use]
    pub fn default_keys() -> DetachKeys {
        DetachKeys {
            keys: vec![0x10, 0x11],
            matched: 0,
        }
    }

    /// Filters `input`: appends to `out` what goes to the container (a partly typed
    /// sequence is held back, and sent with the byte that breaks it); true when the whole
    /// sequence was typed (what follows it is dropped: the client detaches).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            // Broken: what was held back goes first. The byte may start a new sequence.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(k: &mut DetachKeys, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let d = k.feed(input, &mut out);
        (out, d)
    }

    #[test]
    fn docker_syntax_is_parsed_and_bad_keys_are_refused_with_dockers_message() {
        let k = DetachKeys::parse(DEFAULT_DETACH_KEYS).unwrap();
        assert_eq!(k, DetachKeys::default_keys());
        assert_eq!(
            DetachKeys::parse("ctrl-x,y").unwrap().keys,
            vec![0x18, b'y']
        );
        assert_eq!(
            DetachKeys::parse("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,a")
                .unwrap()
                .keys,
            vec![0, 27, 28, 29, 30, 31, b'a']
        );
        for bad in ["", "ctrl-", "ctrl-A", "ctrl-1", "ab", "ctrl-x,,y", "alt-x"] {
            assert_eq!(
                DetachKeys::parse(bad).unwrap_err().to_string(),
                format!("Invalid detach keys ({bad}) provided"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_sequence_detaches_and_a_broken_one_is_sent_as_typed() {
        let mut k = DetachKeys::default_keys();
        assert_eq!(feed(&mut k, b"ls\r"), (b"ls\r".to_vec(), false));
        // Held back while it may still be the sequence, across reads.
        assert_eq!(feed(&mut k, b"\x10"), (vec![], false));
        assert_eq!(feed(&mut k, b"x"), (b"\x10x".to_vec(), false));
        // ctrl-p ctrl-p ctrl-q: the first is sent, the other two detach.
        assert_eq!(feed(&mut k, b"a\x10\x10"), (b"a\x10".to_vec(), false));
        assert_eq!(feed(&mut k, b"\x11rest"), (vec![], true));
        // Matched afresh after a detach.
        assert_eq!(feed(&mut k, b"\x10\x11"), (vec![], true));
        let mut one = DetachKeys::parse("ctrl-x").unwrap();
        assert_eq!(feed(&mut one, b"ab\x18cd"), (b"ab".to_vec(), true));
    }
}
