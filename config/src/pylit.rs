//! A parser for files of Python assignments whose values are literals.
//!
//! `AIGIS.config` is written in Python syntax but comes from a plugin's
//! repository, so it is parsed, never executed: only `NAME = literal`
//! statements are accepted, where a literal is a string (any quote style,
//! raw, triple-quoted, implicitly concatenated), an int, a float, `True`,
//! `False`, `None`, or a list, tuple or dict of literals. Anything that would
//! need evaluating (names, calls, operators, f-strings) is an error with its
//! line and column.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    List(Vec<Spanned>),
    Tuple(Vec<Spanned>),
    Dict(Vec<(Spanned, Spanned)>),
}

impl Value {
    /// "a string", "an int", ... for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a bool",
            Value::None => "None",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Dict(_) => "a dict",
        }
    }
}

/// A value and where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub value: Value,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub name: String,
    pub line: usize,
    pub column: usize,
    pub value: Spanned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    /// The option whose value could not be read, once its name is known.
    pub option: Option<String>,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

const ONLY_LITERALS: &str =
    "only literal values are allowed (AIGIS.config is read, never executed)";

const PY_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Parses every assignment of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<Assignment>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        column: 1,
    };
    let mut out = Vec::new();
    loop {
        p.skip_blank(false);
        match p.peek() {
            None => return Ok(out),
            Some('\n') | Some(';') => {
                p.bump();
            }
            Some(_) => {
                let a = p.assignment()?;
                p.skip_blank(false);
                match p.peek() {
                    None | Some('\n') | Some(';') => {}
                    Some(c) => {
                        let mut e = p.error(format!(
                            "unexpected `{c}` after the value; {ONLY_LITERALS}, one assignment per line"
                        ));
                        e.option = Some(a.name);
                        return Err(e);
                    }
                }
                out.push(a);
            }
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn here(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        self.error_at(self.here(), message)
    }

    fn error_at(&self, (line, column): (usize, usize), message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line,
            column,
            option: None,
            message: message.into(),
        }
    }

    /// Skips spaces, comments and line continuations; inside brackets also
    /// newlines. Stops at a significant newline.
    fn skip_blank(&mut self, in_brackets: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\x0c' => {
                    self.bump();
                }
                '\\' if self.peek_at(1) == Some('\n') => {
                    self.bump();
                    self.bump();
                }
                '\\' if self.peek_at(1) == Some('\r') && self.peek_at(2) == Some('\n') => {
                    self.bump();
                    self.bump();
                    self.bump();
                }
                '#' => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                '\n' if in_brackets => {
                    self.bump();
                }
                _ => return,
            }
        }
    }

    /// An error at an opening bracket that is never closed.
    fn unclosed(&self, open: (usize, usize), close: char) -> SyntaxError {
        let opening = match close {
            ']' => '[',
            ')' => '(',
            _ => '{',
        };
        let found = match self.peek() {
            None => "the end of the file".to_string(),
            Some(_) => format!("line {}, column {}", self.line, self.column),
        };
        self.error_at(
            open,
            format!("this `{opening}` is never closed (expected `{close}` before {found})"),
        )
    }

    /// Whether the next tokens are `NAME =` (not `==`) on a new line: a new
    /// statement, so an open bracket before it was never closed.
    fn starts_assignment(&self) -> bool {
        let mut n = 0;
        while self
            .peek_at(n)
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            n += 1;
        }
        if n == 0 || self.peek_at(0).is_some_and(|c| c.is_ascii_digit()) {
            return false;
        }
        let back = self.pos.checked_sub(1).and_then(|i| self.chars.get(..=i));
        let after_newline = back.is_some_and(|b| {
            b.iter()
                .rev()
                .find(|c| !matches!(c, ' ' | '\t' | '\r' | '\x0c'))
                .is_some_and(|c| *c == '\n')
        });
        while matches!(self.peek_at(n), Some(' ') | Some('\t')) {
            n += 1;
        }
        after_newline && self.peek_at(n) == Some('=') && self.peek_at(n + 1) != Some('=')
    }

    fn identifier(&mut self) -> Option<String> {
        let c = self.peek()?;
        if !(c.is_alphabetic() || c == '_') {
            return None;
        }
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        Some(s)
    }

    fn assignment(&mut self) -> Result<Assignment, SyntaxError> {
        let (line, column) = self.here();
        let Some(name) = self.identifier() else {
            let c = self.peek().unwrap_or(' ');
            return Err(self.error(format!(
                "expected an option name, found `{c}`; each line is `NAME = value`"
            )));
        };
        if PY_KEYWORDS.contains(&name.as_str()) {
            return Err(self.error_at(
                (line, column),
                format!("`{name}` is a Python keyword, not an option name; {ONLY_LITERALS}, as `NAME = value`"),
            ));
        }
        self.skip_blank(false);
        if self.peek() != Some('=') || self.peek_at(1) == Some('=') {
            return Err(self.error(format!(
                "expected `=` after `{name}`; {ONLY_LITERALS}, as `NAME = value`"
            )));
        }
        self.bump();
        self.skip_blank(false);
        if matches!(self.peek(), None | Some('\n') | Some(';')) {
            return Err(self.error(format!("missing value after `{name} =`")));
        }
        let value = self.assigned_value().map_err(|mut e| {
            e.option = Some(name.clone());
            e
        })?;
        Ok(Assignment {
            name,
            line,
            column,
            value,
        })
    }

    /// The value of `NAME = value`: a literal, or a tuple without parentheses.
    fn assigned_value(&mut self) -> Result<Spanned, SyntaxError> {
        let mut value = self.value(false)?;
        // `NAME = a, b` is a tuple without parentheses.
        if self.peek() == Some(',') {
            let mut items = vec![value.clone()];
            loop {
                self.bump();
                self.skip_blank(false);
                if matches!(self.peek(), None | Some('\n') | Some(';') | Some('#')) {
                    break;
                }
                items.push(self.value(false)?);
                if self.peek() != Some(',') {
                    break;
                }
            }
            value = Spanned {
                value: Value::Tuple(items),
                line: value.line,
                column: value.column,
            };
        }
        Ok(value)
    }

    fn value(&mut self, in_brackets: bool) -> Result<Spanned, SyntaxError> {
        let start = self.here();
        let spanned = |value| Spanned {
            value,
            line: start.0,
            column: start.1,
        };
        let c = self
            .peek()
            .ok_or_else(|| self.error("unexpected end of file; expected a value"))?;
        let value = match c {
            '[' => Value::List(self.sequence(']')?.0),
            '(' => {
                let (items, trailing_comma) = self.sequence(')')?;
                if items.len() == 1 && !trailing_comma {
                    // `(x)` is just x in parentheses.
                    return Ok(items
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| spanned(Value::Tuple(vec![]))));
                }
                Value::Tuple(items)
            }
            '{' => self.dict()?,
            '"' | '\'' => self.strings(in_brackets)?,
            '0'..='9' | '.' if c != '.' || self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => {
                self.number(false)?
            }
            '-' => {
                self.bump();
                self.skip_blank(in_brackets);
                match self.peek() {
                    Some(d) if d.is_ascii_digit() || d == '.' => self.number(true)?,
                    _ => {
                        return Err(self.error_at(
                            start,
                            format!("`{c}` must be followed by a number; {ONLY_LITERALS}"),
                        ))
                    }
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let save = (self.pos, self.line, self.column);
                let word = self.identifier().unwrap_or_default();
                if matches!(self.peek(), Some('"') | Some('\'')) {
                    (self.pos, self.line, self.column) = save;
                    self.strings(in_brackets)?
                } else {
                    match word.as_str() {
                        "True" => Value::Bool(true),
                        "False" => Value::Bool(false),
                        "None" => Value::None,
                        _ => {
                            return Err(self.error_at(
                                start,
                                format!("`{word}` is a name, not a value; {ONLY_LITERALS} (quote it if it is a string)"),
                            ))
                        }
                    }
                }
            }
            other => {
                return Err(self.error(format!(
                    "unexpected `{other}`; expected a value: {ONLY_LITERALS}"
                )))
            }
        };
        // Anything but a separator after a value means an expression.
        self.skip_blank(in_brackets);
        if let Some(c) = self.peek() {
            if "+-*/%@&|^<>=(.[~!".contains(c) {
                return Err(self.error(format!(
                    "unexpected `{c}` after a value: expressions are not evaluated; {ONLY_LITERALS}"
                )));
            }
        }
        Ok(spanned(value))
    }

    /// Items up to `close`; returns them and whether a trailing comma was seen.
    fn sequence(&mut self, close: char) -> Result<(Vec<Spanned>, bool), SyntaxError> {
        let open = self.here();
        self.bump();
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            self.skip_blank(true);
            match self.peek() {
                None => return Err(self.unclosed(open, close)),
                Some(_) if self.starts_assignment() => return Err(self.unclosed(open, close)),
                Some(c) if c == close => {
                    self.bump();
                    return Ok((items, trailing));
                }
                Some(_) => {
                    items.push(self.value(true)?);
                    self.skip_blank(true);
                    trailing = false;
                    match self.peek() {
                        Some(',') => {
                            self.bump();
                            trailing = true;
                        }
                        Some(c) if c == close => {}
                        None => return Err(self.unclosed(open, close)),
                        Some(_) if self.starts_assignment() => {
                            return Err(self.unclosed(open, close))
                        }
                        Some(c) => {
                            return Err(self.error(format!(
                                "expected `,` or `{close}`, found `{c}` (the bracket on line {}, column {} is still open)",
                                open.0, open.1
                            )))
                        }
                    }
                }
            }
        }
    }

    fn dict(&mut self) -> Result<Value, SyntaxError> {
        let open = self.here();
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_blank(true);
            match self.peek() {
                None => return Err(self.unclosed(open, '}')),
                Some('}') => {
                    self.bump();
                    return Ok(Value::Dict(items));
                }
                Some(_) if self.starts_assignment() => return Err(self.unclosed(open, '}')),
                Some(_) => {
                    let key = self.value(true)?;
                    self.skip_blank(true);
                    if self.peek() != Some(':') {
                        return Err(self.error("expected `:` between a dict key and its value"));
                    }
                    self.bump();
                    self.skip_blank(true);
                    let value = self.value(true)?;
                    items.push((key, value));
                    self.skip_blank(true);
                    match self.peek() {
                        Some(',') => {
                            self.bump();
                        }
                        Some('}') => {}
                        None => return Err(self.unclosed(open, '}')),
                        Some(_) if self.starts_assignment() => return Err(self.unclosed(open, '}')),
                        Some(c) => {
                            return Err(self.error(format!("expected `,` or `}}`, found `{c}`")))
                        }
                    }
                }
            }
        }
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self, in_brackets: bool) -> Result<Value, SyntaxError> {
        let mut out = String::new();
        loop {
            out.push_str(&self.string()?);
            let save = (self.pos, self.line, self.column);
            self.skip_blank(in_brackets);
            let next_is_string = match self.peek() {
                Some('"') | Some('\'') => true,
                Some(c) if c.is_alphabetic() => {
                    let mut n = 0;
                    while self.peek_at(n).is_some_and(|c| c.is_alphabetic()) && n < 3 {
                        n += 1;
                    }
                    matches!(self.peek_at(n), Some('"') | Some('\''))
                }
                _ => false,
            };
            if !next_is_string {
                (self.pos, self.line, self.column) = save;
                return Ok(Value::Str(out));
            }
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.here();
        let mut raw = false;
        while let Some(c) = self.peek() {
            match c.to_ascii_lowercase() {
                'r' => raw = true,
                'u' => {}
                'b' => {
                    return Err(self.error_at(
                        start,
                        format!(
                            "bytes literals are not allowed, use a plain string; {ONLY_LITERALS}"
                        ),
                    ))
                }
                'f' => {
                    return Err(
                        self.error_at(start, format!("f-strings are not allowed; {ONLY_LITERALS}"))
                    )
                }
                '"' | '\'' => break,
                _ => return Err(self.error_at(start, "unknown string prefix")),
            }
            self.bump();
        }
        let quote = self.bump().ok_or_else(|| self.error("expected a quote"))?;
        let triple = self.peek() == Some(quote) && self.peek_at(1) == Some(quote);
        if triple {
            self.bump();
            self.bump();
        }
        let mut s = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error_at(start, "this string is never closed"));
            };
            if c == quote {
                if !triple {
                    self.bump();
                    return Ok(s);
                }
                if self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote) {
                    self.bump();
                    self.bump();
                    self.bump();
                    return Ok(s);
                }
            }
            if c == '\n' && !triple {
                return Err(self.error_at(
                    start,
                    "this string is never closed (it reaches the end of the line)",
                ));
            }
            if c == '\r' && self.peek_at(1) == Some('\n') {
                // CRLF inside a (triple-quoted) string reads as `\n`, as in Python.
                self.bump();
                continue;
            }
            let char_at = self.here();
            self.bump();
            if c != '\\' {
                s.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err(self.error_at(start, "this string is never closed"));
            };
            if raw {
                // Raw strings keep the backslash; it still escapes a quote.
                s.push('\\');
                s.push(e);
                self.bump();
                continue;
            }
            let at = char_at;
            self.bump();
            match e {
                '\n' => {}
                '\r' if self.peek() == Some('\n') => {
                    self.bump();
                }
                '\\' => s.push('\\'),
                '\'' => s.push('\''),
                '"' => s.push('"'),
                'n' => s.push('\n'),
                't' => s.push('\t'),
                'r' => s.push('\r'),
                'a' => s.push('\x07'),
                'b' => s.push('\x08'),
                'f' => s.push('\x0c'),
                'v' => s.push('\x0b'),
                '0'..='7' => {
                    let mut v = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.peek().and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                self.bump();
                            }
                            None => break,
                        }
                    }
                    s.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut v = 0u32;
                    for _ in 0..n {
                        let d = self.peek().and_then(|d| d.to_digit(16)).ok_or_else(|| {
                            self.error_at(at, format!("`\\{e}` needs {n} hex digits"))
                        })?;
                        v = v.wrapping_mul(16).wrapping_add(d);
                        self.bump();
                    }
                    s.push(char::from_u32(v).ok_or_else(|| {
                        self.error_at(at, format!("`\\{e}{v:x}` is not a valid character"))
                    })?);
                }
                other => {
                    s.push('\\');
                    s.push(other);
                }
            }
        }
    }

    fn number(&mut self, negative: bool) -> Result<Value, SyntaxError> {
        let start = self.here();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            let exponent_sign = (c == '-' || c == '+')
                && text.ends_with(['e', 'E'])
                && !text.starts_with("0x")
                && !text.starts_with("0X");
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || exponent_sign {
                text.push(c);
                self.bump();
            } else {
                break;
            }
        }
        let bad = || self.error_at(start, format!("`{text}` is not a number"));
        let clean: String = text.chars().filter(|&c| c != '_').collect();
        if text.starts_with('_') || text.ends_with('_') || text.contains("__") {
            return Err(bad());
        }
        let lower = clean.to_ascii_lowercase();
        let radix = match lower.get(..2) {
            Some("0x") => Some(16),
            Some("0o") => Some(8),
            Some("0b") => Some(2),
            _ => None,
        };
        let int = match radix {
            Some(_) if clean.len() == 2 => return Err(bad()),
            Some(r) => i64::from_str_radix(clean.get(2..).unwrap_or_default(), r).ok(),
            None if lower.contains(['.', 'e']) => {
                let f: f64 = lower.parse().map_err(|_| bad())?;
                return Ok(Value::Float(if negative { -f } else { f }));
            }
            None if clean.len() > 1
                && clean.starts_with('0')
                && clean.bytes().any(|b| b != b'0') =>
            {
                return Err(self.error_at(
                    start,
                    format!("`{text}`: leading zeros are not allowed in Python ints"),
                ))
            }
            None => clean.parse::<i64>().ok(),
        };
        let v = int.ok_or_else(|| {
            if clean
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'x' || b == b'o' || b == b'b')
                && !clean.is_empty()
            {
                self.error_at(start, format!("`{text}` is too large"))
            } else {
                bad()
            }
        })?;
        Ok(Value::Int(if negative { -v } else { v }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        let a = parse(&format!("X = {text}\n")).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(a.len(), 1);
        a[0].value.value.clone()
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn err(text: &str) -> SyntaxError {
        parse(text).expect_err(text)
    }

    #[test]
    fn strings() {
        assert_eq!(one(r#""a""#), s("a"));
        assert_eq!(one("'b'"), s("b"));
        assert_eq!(one(r#""it's \"x\"\n\t\\""#), s("it's \"x\"\n\t\\"));
        assert_eq!(one(r"'\x41\u00e9\101\q'"), s("AéA\\q"));
        assert_eq!(one(r"r'C:\path\n'"), s(r"C:\path\n"));
        assert_eq!(one("u'x'"), s("x"));
        assert_eq!(one("'''multi\nline'''"), s("multi\nline"));
        assert_eq!(one("\"\"\"a \"quoted\" b\"\"\""), s("a \"quoted\" b"));
        assert_eq!(one("'a' \"b\""), s("ab"));
        assert_eq!(one("('a'\n 'b')"), s("ab"));
        assert_eq!(one("'line \\\ncontinued'"), s("line continued"));
    }

    #[test]
    fn numbers_and_constants() {
        assert_eq!(one("42"), Value::Int(42));
        assert_eq!(one("-3"), Value::Int(-3));
        assert_eq!(one("1_000"), Value::Int(1000));
        assert_eq!(one("0x1f"), Value::Int(31));
        assert_eq!(one("0o17"), Value::Int(15));
        assert_eq!(one("0b101"), Value::Int(5));
        assert_eq!(one("0"), Value::Int(0));
        assert_eq!(one("1.5"), Value::Float(1.5));
        assert_eq!(one("1e3"), Value::Float(1000.0));
        assert_eq!(one("True"), Value::Bool(true));
        assert_eq!(one("False"), Value::Bool(false));
        assert_eq!(one("None"), Value::None);
    }

    #[test]
    fn containers_with_positions() {
        let a = parse(
            "A = [\n  'x',  # comment\n  'y',\n]\nB = {'k': (1, 2), 'e': ()}\nC = (1,)\nD = (1)\n",
        )
        .unwrap();
        assert_eq!(a.len(), 4);
        let Value::List(items) = &a[0].value.value else {
            panic!()
        };
        assert_eq!((items[1].line, items[1].column), (3, 3));
        let Value::Dict(d) = &a[1].value.value else {
            panic!()
        };
        assert_eq!(
            d[0].1.value,
            Value::Tuple(vec![
                Spanned {
                    value: Value::Int(1),
                    line: 5,
                    column: 12
                },
                Spanned {
                    value: Value::Int(2),
                    line: 5,
                    column: 15
                },
            ])
        );
        assert_eq!(d[1].1.value, Value::Tuple(vec![]));
        assert!(matches!(&a[2].value.value, Value::Tuple(t) if t.len() == 1));
        assert_eq!(a[3].value.value, Value::Int(1));
        assert_eq!((a[1].line, a[1].column), (5, 1));
    }

    #[test]
    fn more_literal_forms() {
        assert_eq!(one(r"'\0\r\u00e9\x7e'"), s("\0\r\u{e9}~"));
        assert_eq!(one(r"R'\d'"), s(r"\d"));
        assert_eq!(one("U'x' r'y'"), s("xy"));
        assert_eq!(one(r#"'''it's "ok"'''"#), s("it's \"ok\""));
        assert_eq!(one(r#""""""""#), s(""));
        assert_eq!(one("''"), s(""));
        assert_eq!(one(r"'\''"), s("'"));
        assert_eq!(one("-1.5"), Value::Float(-1.5));
        assert_eq!(one("- 3"), Value::Int(-3));
        assert_eq!(one(".5"), Value::Float(0.5));
        assert_eq!(one("1."), Value::Float(1.0));
        assert_eq!(one("1e-2"), Value::Float(0.01));
        assert_eq!(one("0x_FF"), Value::Int(255));
        assert_eq!(one("0_0"), Value::Int(0));
        assert_eq!(one("-0b11"), Value::Int(-3));
        assert_eq!(one("[]"), Value::List(vec![]));
        assert_eq!(one("{}"), Value::Dict(vec![]));
        assert_eq!(one("()"), Value::Tuple(vec![]));
        assert!(matches!(one("[1, 2,]"), Value::List(v) if v.len() == 2));
        assert!(matches!(one("{'a': 1,}"), Value::Dict(v) if v.len() == 1));
        assert!(matches!(one("1, 2"), Value::Tuple(v) if v.len() == 2));
        assert!(matches!(one("'a',"), Value::Tuple(v) if v.len() == 1));
        assert!(matches!(one("[[1, (2,)], {None: True}]"), Value::List(v) if v.len() == 2));
        let Value::Dict(d) = one("{1: 'a', (1, 2): 'b', False: None, -2.5: []}") else {
            panic!()
        };
        let keys: Vec<_> = d.iter().map(|(k, _)| k.value.type_name()).collect();
        assert_eq!(keys, ["an int", "a tuple", "a bool", "a float"]);
    }

    #[test]
    fn crlf_bom_and_positions() {
        let a = parse("\u{feff}A = 1\r\nB = '''x\r\ny'''\r\nC = 'a\\\r\nb'\r\n").unwrap();
        assert_eq!(a[0].value.value, Value::Int(1));
        assert_eq!(a[1].value.value, s("x\ny"));
        assert_eq!(a[2].value.value, s("ab"));
        assert_eq!((a[2].line, a[2].column), (4, 1));
        let a = parse("X = '''one\ntwo'''; Y = \\\n   (  'p'\n  'q' ) ; Z = -7\n").unwrap();
        assert_eq!((a[1].line, a[1].column), (2, 9));
        assert_eq!((a[1].value.line, a[1].value.column), (3, 7));
        assert_eq!(a[1].value.value, s("pq"));
        assert_eq!((a[2].value.line, a[2].value.column), (4, 15));
        assert_eq!(a[2].value.value, Value::Int(-7));
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# only a comment\n\n;\n").unwrap().is_empty());
    }

    #[test]
    fn no_panic_on_any_truncation() {
        let text = "\u{feff}A = [1, -2.5e3, 0x_1F, (3,), {'k': r'\\d', \"é\": None}]\r\n\
                    B = '''x\\\ny''' u'\\u00e9\\x41\\101' ; C = \\\n True, 'a',\n\
                    # c\nD = {(1, 'a'): [\"\"\"q\"\"\", b'x', f'y', 1_0, 0o7, 0b1, .5]}\n";
        let chars: Vec<char> = text.chars().collect();
        for n in 0..=chars.len() {
            let prefix: String = chars[..n].iter().collect();
            let _ = parse(&prefix);
            let skipped: String = chars[n..].iter().collect();
            let _ = parse(&skipped);
        }
    }

    #[test]
    fn statements_comments_semicolons_continuations() {
        let a = parse("# header\n\nA = 1; B = 2  # trailing\nC = \\\n  3\n").unwrap();
        let names: Vec<_> = a.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(a[2].value.value, Value::Int(3));
    }

    #[test]
    fn what_would_need_executing_is_refused() {
        for (text, pos, needle) in [
            ("A = os.getcwd()\n", (1, 5), "`os` is a name"),
            ("A = 1 + 2\n", (1, 7), "expressions are not evaluated"),
            ("A = f'{x}'\n", (1, 5), "f-strings"),
            ("A = b'x'\n", (1, 5), "bytes"),
            ("import os\n", (1, 1), "`import` is a Python keyword"),
            (
                "from os import path\n",
                (1, 1),
                "`from` is a Python keyword",
            ),
            ("A = +3\n", (1, 5), "unexpected `+`"),
            ("A = ~3\n", (1, 5), "only literal values are allowed"),
            ("A = not True\n", (1, 5), "`not` is a name"),
            (
                "A = 1 if True else 2\n",
                (1, 7),
                "unexpected `i` after the value",
            ),
            ("A = {**B}\n", (1, 6), "unexpected `*`"),
            ("A = [x for x in 'ab']\n", (1, 6), "`x` is a name"),
            ("A = B = 1\n", (1, 5), "`B` is a name"),
            ("A = print('x')\n", (1, 5), "`print` is a name"),
            ("A = 'a'.upper()\n", (1, 8), "expressions are not evaluated"),
            ("A = [1][0]\n", (1, 8), "expressions are not evaluated"),
            ("A = 0x\n", (1, 5), "not a number"),
            ("A = 1j\n", (1, 5), "not a number"),
            ("A = 1__0\n", (1, 5), "not a number"),
            ("A = rb'x'\n", (1, 5), "bytes"),
            ("A = 'a' f'b'\n", (1, 9), "f-strings"),
            ("A = \"x\ny\"\n", (1, 5), "never closed"),
            ("A = r'x\\'\n", (1, 5), "never closed"),
            ("A = (1, 2\n", (1, 5), "never closed"),
            ("A = {'a': 1,\nB = 2\n", (1, 5), "`{` is never closed"),
            (
                "A = [\n  'x',\nB = 2\n",
                (1, 5),
                "`[` is never closed (expected `]` before line 3, column 1)",
            ),
            ("A = [,]\n", (1, 6), "unexpected `,`"),
            ("A = ()\nB = (,)\n", (2, 6), "unexpected `,`"),
            ("A.b = 1\n", (1, 2), "expected `=` after `A`"),
            ("A: int = 1\n", (1, 2), "expected `=`"),
            ("A = 1,, 2\n", (1, 7), "unexpected `,`"),
            ("A += 1\n", (1, 3), "expected `=`"),
            ("A == 1\n", (1, 3), "expected `=`"),
            ("A = [1, 2\nB = 3\n", (1, 5), "`[` is never closed"),
            ("A = [1, 2\n 3]\n", (2, 2), "line 1, column 5 is still open"),
            ("A = 'abc\n", (1, 5), "never closed"),
            ("A = '''abc\n", (1, 5), "never closed"),
            ("A = {'k' 1}\n", (1, 10), "expected `:`"),
            ("A =\n", (1, 4), "missing value"),
            ("A = 1 2\n", (1, 7), "unexpected `2`"),
            ("A = 012\n", (1, 5), "leading zeros"),
            ("A = 99999999999999999999\n", (1, 5), "too large"),
            ("A = '\\x4'\n", (1, 6), "hex digits"),
            ("A = [1 2]\n", (1, 8), "expected `,` or `]`"),
            ("= 1\n", (1, 1), "expected an option name"),
            ("A = -'x'\n", (1, 5), "followed by a number"),
        ] {
            let e = err(text);
            assert_eq!((e.line, e.column), pos, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }
}
