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
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

const ONLY_LITERALS: &str =
    "only literal values are allowed (AIGIS.config is read, never executed)";

/// Parses every assignment of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<Assignment>, SyntaxError> {
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
                out.push(p.assignment()?);
                p.skip_blank(false);
                match p.peek() {
                    None | Some('\n') | Some(';') => {}
                    Some(c) => {
                        return Err(p.error(format!(
                            "unexpected `{c}` after the value; {ONLY_LITERALS}, one assignment per line"
                        )))
                    }
                }
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
        let value = self.value(false)?;
        Ok(Assignment {
            name,
            line,
            column,
            value,
        })
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
            '-' | '+' => {
                self.bump();
                self.skip_blank(in_brackets);
                match self.peek() {
                    Some(d) if d.is_ascii_digit() || d == '.' => self.number(c == '-')?,
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
            other => return Err(self.error(format!("unexpected `{other}`; expected a value"))),
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
                None => {
                    return Err(self.error_at(
                        open,
                        format!("this bracket is never closed (expected `{close}`)"),
                    ))
                }
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
                        None => return Err(self.error_at(open, format!("this bracket is never closed (expected `{close}`)"))),
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
                None => return Err(self.error_at(open, "this `{` is never closed (expected `}`)")),
                Some('}') => {
                    self.bump();
                    return Ok(Value::Dict(items));
                }
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
                        None => {
                            return Err(
                                self.error_at(open, "this `{` is never closed (expected `}`)")
                            )
                        }
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
                    return Err(
                        self.error_at(start, "bytes literals are not allowed; use a plain string")
                    )
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
            Some(r) => i64::from_str_radix(&clean[2..], r).ok(),
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
            ("import os\n", (1, 8), "expected `=` after `import`"),
            ("A += 1\n", (1, 3), "expected `=`"),
            ("A == 1\n", (1, 3), "expected `=`"),
            (
                "A = [1, 2\nB = 3\n",
                (2, 1),
                "line 1, column 5 is still open",
            ),
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
