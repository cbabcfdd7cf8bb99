//! Lines of output in one buffer.

use serde::{Deserialize, Serialize};

/// Lines, in order, each ended by `\n` in one string: a batch of a
/// thousand lines is one allocation and one UTF-8 check on each side of
/// the wire, not a thousand (a plugin printing 62-byte lines spent a fifth
/// of the agent's time and a sixth of central's in the allocator when each
/// line was a `String`).
///
/// No line contains `\n`: [`Lines::push`] keeps that. What a peer sends may
/// not end with one; [`Lines::iter`] then still gives its last line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lines(String);

impl Lines {
    pub fn new() -> Lines {
        Lines::default()
    }

    /// One line; a `\n` in it starts another.
    pub fn one(line: &str) -> Lines {
        let mut lines = Lines::new();
        lines.push(line);
        lines
    }

    /// Appends `line` (a `\n` in it ends a line, as it would on a terminal).
    pub fn push(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }

    /// Appends the lines of `more`.
    pub fn append(&mut self, more: Lines) {
        if !self.0.is_empty() && !self.0.ends_with('\n') {
            self.0.push('\n');
        }
        self.0.push_str(&more.0);
    }

    /// Appends raw bytes as one line: a final `\r` dropped, invalid UTF-8
    /// replaced (U+FFFD). `raw` holds no `\n` (the caller split on it).
    pub fn push_raw(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(s) => self.push(s),
            Err(_) => self.push(&String::from_utf8_lossy(raw)),
        }
    }

    /// The lines, without their ends. Line ends are found with the
    /// `memchr` crate (vectorized), as the agent's splitter finds them: a
    /// log file's writer goes over every line of a flood.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            text: &self.0,
            ends: memchr::memchr_iter(b'\n', self.0.as_bytes()),
            start: 0,
        }
    }

    /// How many lines.
    pub fn count(&self) -> usize {
        let ends = memchr::memchr_iter(b'\n', self.0.as_bytes()).count();
        ends + usize::from(!self.0.is_empty() && !self.0.ends_with('\n'))
    }

    /// The bytes of the lines, their ends included.
    pub fn bytes(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The lines of [`Lines`], in order.
pub struct Iter<'a> {
    text: &'a str,
    ends: memchr::Memchr<'a>,
    start: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.start;
        match self.ends.next() {
            Some(end) => {
                self.start = end + 1;
                // `\n` is ASCII: both ends are on character boundaries.
                Some(&self.text[start..end])
            }
            None if start < self.text.len() => {
                self.start = self.text.len();
                Some(&self.text[start..])
            }
            None => None,
        }
    }
}

impl<'a> FromIterator<&'a str> for Lines {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Lines {
        let mut lines = Lines::new();
        iter.into_iter().for_each(|l| lines.push(l));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_order_and_empty_ones() {
        let lines: Lines = ["a", "", "b\r"].into_iter().collect();
        assert_eq!(lines.iter().collect::<Vec<_>>(), ["a", "", "b\r"]);
        assert_eq!(lines.count(), 3);
        assert_eq!(lines.bytes(), 6);
        let mut raw = Lines::new();
        raw.push_raw(b"crlf\r");
        raw.push_raw(b"bad \xff");
        raw.push_raw(b"");
        assert_eq!(raw.iter().collect::<Vec<_>>(), ["crlf", "bad \u{fffd}", ""]);
        // From a peer, the last line needs no end.
        let sent: Lines = bincode::serde::decode_from_slice(
            &bincode::serde::encode_to_vec("x\ny", bincode::config::standard()).unwrap(),
            bincode::config::standard(),
        )
        .unwrap()
        .0;
        assert_eq!(sent.iter().collect::<Vec<_>>(), ["x", "y"]);
        assert!(Lines::new().is_empty() && Lines::new().count() == 0);
        let mut both = Lines("a".into()); // a peer's, without its end
        both.append(Lines::one("b"));
        assert_eq!(both.iter().collect::<Vec<_>>(), ["a", "b"]);
        // Counted and cut as `str::split_terminator` would, whatever the end.
        for text in ["", "\n", "a", "a\n", "a\nb", "\n\nb\n", "é\nü", "x\n\n"] {
            let lines = Lines(text.to_string());
            let want: Vec<&str> = text.split_terminator('\n').collect();
            assert_eq!(lines.iter().collect::<Vec<_>>(), want, "{text:?}");
            assert_eq!(lines.count(), want.len(), "{text:?}");
        }
    }
}
