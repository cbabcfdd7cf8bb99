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

    /// Appends raw bytes as one line: a final `\r` dropped, invalid UTF-8
    /// replaced (U+FFFD). `raw` holds no `\n` (the caller split on it).
    pub fn push_raw(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(s) => self.push(s),
            Err(_) => self.push(&String::from_utf8_lossy(raw)),
        }
    }

    pub fn iter(&self) -> std::str::SplitTerminator<'_, char> {
        self.0.split_terminator('\n')
    }

    /// How many lines.
    pub fn count(&self) -> usize {
        self.iter().count()
    }

    /// The bytes of the lines, their ends included.
    pub fn bytes(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
    }
}
