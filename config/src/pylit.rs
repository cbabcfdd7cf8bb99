//! A parser for files of Python assignments whose values are literals.
//!
//! `AIGIS.config` is written in Python syntax but comes from a plugin's
//! repository, so it is parsed, never executed. The contract: a file is
//! accepted exactly when Python (3.11) would parse it and every top-level
//! statement is either a bare string (a docstring, say; skipped) or
//! `NAME = value` with one plain name target and a value that
//! `ast.literal_eval` accepts, and the values are the ones `literal_eval`
//! returns. Everything else is an error with its line and column: names,
//! calls, operators, f-strings, anything that would need evaluating.
//!
//! What `literal_eval` accepts: strings and bytes (every prefix and quote
//! style, implicit concatenation), ints of any size, floats, imaginary
//! numbers and `real ± imaginary` sums, `+`/`-` on one number, `True`,
//! `False`, `None`, `...`, and tuples, lists, dicts, sets and `set()` of
//! those. Dict keys and set items must be hashable.
//!
//! The tokenizer follows CPython's where it matters: comments, blank lines,
//! `\` continuations, newlines inside brackets, `;`, indentation (an
//! indented statement is an error), `\r\n` and lone `\r`, a BOM, `# coding:`
//! declarations (UTF-8, Latin-1 and ASCII are followed exactly).
//! `tests/literal_eval_differential.rs` checks all this against `python3`.
//!
//! Known divergences from Python, all refusals of things Python accepts:
//! - brackets nested deeper than [`MAX_DEPTH`] (Python allows about 200);
//! - `\N{NAME}` escapes (write the character itself) and lone surrogates
//!   (`'\ud800'`), which a Rust string cannot hold;
//! - option names that are not ASCII (Python NFKC-normalizes names, so
//!   `ＨＯＳＴ` would be `HOST`; without Unicode tables that cannot be
//!   followed, so it is refused);
//! - ints written in hex, octal or binary whose decimal form has more than
//!   4300 digits (Python's own limit for decimal literals);
//! - `# coding:` declarations of other encodings (cp1252, ...).
//!
//! The parser keeps open brackets on the heap, not the call stack: hostile
//! nesting cannot overflow the stack.

use std::collections::VecDeque;
use std::fmt;

/// The deepest nesting of brackets accepted.
pub const MAX_DEPTH: usize = 100;

/// Python refuses decimal int literals with more digits than this
/// (`sys.int_info.default_max_str_digits`); AIGIS applies it to every int.
const MAX_INT_DIGITS: usize = 4300;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bytes(Vec<u8>),
    Int(i64),
    /// An int outside `i64`: its decimal digits, with a leading `-` if
    /// negative.
    BigInt(String),
    Float(f64),
    Complex {
        re: f64,
        im: f64,
    },
    Bool(bool),
    None,
    /// `...`
    Ellipsis,
    List(Vec<Spanned>),
    Tuple(Vec<Spanned>),
    /// Every `key: value` pair in source order, repeated keys included
    /// (Python keeps the last value of a repeated key).
    Dict(Vec<(Spanned, Spanned)>),
    /// Every item in source order, repeated items included (`set()` is an
    /// empty `Set`).
    Set(Vec<Spanned>),
}

impl Value {
    /// "a string", "an int", ... for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Bytes(_) => "bytes",
            Value::Int(_) => "an int",
            Value::BigInt(_) => "an int too large for 64 bits",
            Value::Float(_) => "a float",
            Value::Complex { .. } => "a complex number",
            Value::Bool(_) => "a bool",
            Value::None => "None",
            Value::Ellipsis => "`...` (Ellipsis)",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Dict(_) => "a dict",
            Value::Set(_) => "a set",
        }
    }

    /// Whether Python can hash it (be a dict key or a set item): lists,
    /// dicts and sets cannot, nor tuples containing them.
    pub fn is_hashable(&self) -> bool {
        unhashable_part(self).is_none()
    }
}

/// The type name of the first unhashable part of `v`, if any.
fn unhashable_part(v: &Value) -> Option<&'static str> {
    match v {
        Value::List(_) | Value::Dict(_) | Value::Set(_) => Some(v.type_name()),
        Value::Tuple(items) => items.iter().find_map(|i| unhashable_part(&i.value)),
        _ => None,
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

/// Parses every assignment of `text`, in order. Bare strings (docstrings)
/// are checked and skipped.
pub fn parse(text: &str) -> Result<Vec<Assignment>, SyntaxError> {
    let stripped = text.strip_prefix('\u{feff}');
    let bom = stripped.is_some();
    let text = stripped.unwrap_or(text);
    let mut chars = translate_newlines(text);
    if let Some(i) = chars.iter().position(|&c| c == '\0') {
        return Err(error_at(
            position_of(&chars, i),
            "the file contains a NUL character (byte 0); Python refuses such files",
        ));
    }
    match coding_declaration(&chars, bom)? {
        Encoding::Utf8 => {}
        Encoding::Latin1 => {
            // Python decodes the file's bytes as Latin-1: each UTF-8 byte
            // becomes one character.
            chars = translate_newlines(&text.bytes().map(char::from).collect::<String>());
        }
        Encoding::Ascii => {
            if let Some(i) = chars.iter().position(|c| !c.is_ascii()) {
                return Err(error_at(
                    position_of(&chars, i),
                    "non-ASCII character in a file declared `coding: ascii`",
                ));
            }
        }
    }
    Parser {
        lx: Lexer::new(chars),
        ahead: VecDeque::new(),
        depth: 0,
    }
    .file()
}

/// `\r\n` and a lone `\r` both end a line, as in Python. Like CPython's
/// `translate_newlines`, a file ending in `\r\n` gets one more newline
/// (which lets a final `\` line continuation end the file).
fn translate_newlines(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len() + 1);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
                if chars.peek().is_none() {
                    out.push('\n');
                }
            }
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

fn position_of(chars: &[char], i: usize) -> (usize, usize) {
    let before = &chars[..i.min(chars.len())];
    let line = before.iter().filter(|&&c| c == '\n').count() + 1;
    let column = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
    (line, column)
}

/// How Python decodes the file, from its coding declaration.
enum Encoding {
    Utf8,
    Latin1,
    Ascii,
}

/// Python honours `# -*- coding: NAME -*-` on the first or second line
/// (the second only if the first is blank or a comment). UTF-8, Latin-1
/// and ASCII are followed exactly; any other encoding is refused rather
/// than misread.
fn coding_declaration(chars: &[char], bom: bool) -> Result<Encoding, SyntaxError> {
    let mut start = 0;
    for line_no in 1..=2 {
        if start >= chars.len() {
            break;
        }
        let end = chars[start..]
            .iter()
            .position(|&c| c == '\n')
            .map_or(chars.len(), |i| start + i);
        let line: String = chars[start..end].iter().collect();
        let code = line.trim_start_matches([' ', '\t', '\x0c']);
        if code.starts_with('#') {
            if let Some(name) = coding_spec(&line) {
                return encoding_named(&name, bom).ok_or_else(|| {
                    error_at(
                        (line_no, 1),
                        if bom {
                            format!("coding declaration `{name}` contradicts the UTF-8 byte order mark")
                        } else {
                            format!(
                                "coding declaration `{name}`: AIGIS.config is read as UTF-8; remove \
                                 the declaration or write `# -*- coding: utf-8 -*-`"
                            )
                        },
                    )
                });
            }
        } else if !code.is_empty() {
            break;
        }
        start = end + 1;
    }
    Ok(Encoding::Utf8)
}

/// The NAME of the first `coding[:=][ \t]*NAME` in a comment line.
fn coding_spec(line: &str) -> Option<String> {
    let mut rest = line;
    while let Some(i) = rest.find("coding") {
        rest = &rest[i + 6..];
        let Some(after) = rest.strip_prefix([':', '=']) else {
            continue;
        };
        let name: String = after
            .trim_start_matches([' ', '\t'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        if !name.is_empty() {
            return Some(name);
        }
    }
    None
}

/// The encoding Python resolves NAME to, among those AIGIS follows.
fn encoding_named(name: &str, bom: bool) -> Option<Encoding> {
    // The tokenizer's own normalisation: 12 characters, `_` read as `-`.
    let short: String = name
        .chars()
        .take(12)
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let prefixed = |p: &str| short == p || short.starts_with(&format!("{p}-"));
    if prefixed("utf-8") {
        return Some(Encoding::Utf8);
    }
    if bom {
        return None;
    }
    if prefixed("latin-1") || prefixed("iso-8859-1") || prefixed("iso-latin-1") {
        return Some(Encoding::Latin1);
    }
    // Then the codec registry: lower case, runs of other characters than
    // letters, digits and `.` become one `_`, then aliases.
    let mut codec = String::new();
    let mut punct = false;
    for c in name.to_ascii_lowercase().chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            if punct && !codec.is_empty() {
                codec.push('_');
            }
            codec.push(c);
            punct = false;
        } else {
            punct = true;
        }
    }
    // An alias matches with `.` read as `_`; a module name only as is.
    let underscored = codec.replace('.', "_");
    let is = |module: &str, aliases: &[&str]| {
        codec == module
            || aliases.contains(&codec.as_str())
            || aliases.contains(&underscored.as_str())
    };
    if is(
        "utf_8",
        &["cp65001", "u8", "utf", "utf8", "utf8_ucs2", "utf8_ucs4"],
    ) {
        Some(Encoding::Utf8)
    } else if is(
        "latin_1",
        &[
            "8859",
            "cp819",
            "csisolatin1",
            "ibm819",
            "iso8859",
            "iso8859_1",
            "iso_8859_1",
            "iso_8859_1_1987",
            "iso_ir_100",
            "l1",
            "latin",
            "latin1",
        ],
    ) {
        Some(Encoding::Latin1)
    } else if is(
        "ascii",
        &[
            "646",
            "ansi_x3.4_1968",
            "ansi_x3.4_1986",
            "ansi_x3_4_1968",
            "cp367",
            "csascii",
            "ibm367",
            "iso646_us",
            "iso_646.irv_1991",
            "iso_ir_6",
            "us",
            "us_ascii",
        ],
    ) {
        Some(Encoding::Ascii)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    /// Decimal digits without sign or leading zeros.
    Int(String),
    Float(f64),
    /// `2j`: the imaginary part.
    Imag(f64),
    Str(String),
    Bytes(Vec<u8>),
    Op(&'static str),
    /// A character no token starts with.
    Other(char),
    Newline,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
    /// The first token of its physical line.
    first_on_line: bool,
    /// Its first character, for messages.
    first: char,
}

impl Token {
    fn pos(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.tok, Tok::Op(o) if o == op)
    }

    fn is_end(&self) -> bool {
        matches!(self.tok, Tok::Newline | Tok::End)
    }

    /// How a message names it: `` `x` `` or "the end of the line".
    fn shown(&self) -> String {
        match self.tok {
            Tok::Newline => "the end of the line".into(),
            Tok::End => "the end of the file".into(),
            _ => format!("`{}`", self.first),
        }
    }
}

const OPERATORS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "...", "!=", "%=", "&=", "**", "*=", "+=", "-=", "->", "//", "/=",
    ":=", "<<", "<=", "<>", "==", ">=", ">>", "@=", "^=", "|=", "%", "&", "(", ")", "*", "+", ",",
    "-", ".", "/", ":", ";", "<", "=", ">", "@", "[", "]", "^", "{", "|", "}", "~",
];

fn error_at((line, column): (usize, usize), message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        line,
        column,
        option: None,
        message: message.into(),
    }
}

/// Python's tokenizer, for the tokens a literal file can hold; everything
/// else becomes `Tok::Other` or `Tok::Op` for the parser to refuse.
struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
    /// Open brackets: newlines inside them are not tokens.
    level: usize,
    at_line_start: bool,
    /// A token was produced since the last NEWLINE.
    line_has_tokens: bool,
    /// No token yet on this physical line.
    first_on_line: bool,
    failed: Option<SyntaxError>,
    ended: bool,
}

impl Lexer {
    fn new(chars: Vec<char>) -> Lexer {
        Lexer {
            chars,
            pos: 0,
            line: 1,
            column: 1,
            level: 0,
            at_line_start: true,
            line_has_tokens: false,
            first_on_line: true,
            failed: None,
            ended: false,
        }
    }

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
            self.first_on_line = true;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn here(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    fn next_token(&mut self) -> Result<Token, SyntaxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let t = self.scan();
        if let Err(e) = &t {
            self.failed = Some(e.clone());
        }
        t
    }

    fn scan(&mut self) -> Result<Token, SyntaxError> {
        loop {
            if self.at_line_start {
                self.at_line_start = false;
                self.indentation()?;
            }
            while matches!(self.peek(), Some(' ' | '\t' | '\x0c')) {
                self.bump();
            }
            let start = self.here();
            let Some(c) = self.peek() else {
                if self.line_has_tokens && self.level == 0 {
                    self.line_has_tokens = false;
                    return Ok(self.token(Tok::Newline, start, '\n'));
                }
                self.ended = true;
                return Ok(self.token(Tok::End, start, ' '));
            };
            match c {
                '#' => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                '\n' => {
                    self.bump();
                    self.at_line_start = true;
                    if self.line_has_tokens && self.level == 0 {
                        self.line_has_tokens = false;
                        return Ok(self.token(Tok::Newline, start, '\n'));
                    }
                }
                '\\' => self.continuation()?,
                _ => {
                    let tok = self.token_at(c, start)?;
                    self.line_has_tokens = true;
                    return Ok(self.token(tok, start, c));
                }
            }
        }
    }

    fn token(&mut self, tok: Tok, (line, column): (usize, usize), first: char) -> Token {
        let t = Token {
            tok,
            line,
            column,
            first_on_line: self.first_on_line,
            first,
        };
        self.first_on_line = false;
        t
    }

    /// At the start of a line: a statement at the top level must not be
    /// indented (Python's IndentationError); blank and comment lines may.
    fn indentation(&mut self) -> Result<(), SyntaxError> {
        let mut column = 0usize;
        let mut continued_at = 0usize;
        loop {
            match self.peek() {
                Some(' ') => column += 1,
                Some('\t') => column = (column / 8 + 1) * 8,
                Some('\x0c') => column = 0,
                Some('\\') => {
                    if continued_at == 0 {
                        continued_at = column;
                    }
                    self.continuation()?;
                    continue;
                }
                _ => break,
            }
            self.bump();
        }
        if matches!(self.peek(), None | Some('#') | Some('\n')) || self.level > 0 {
            return Ok(());
        }
        let indent = if continued_at != 0 {
            continued_at
        } else {
            column
        };
        if indent != 0 {
            return Err(error_at(
                self.here(),
                "unexpected indent: a statement must start at the beginning of its line",
            ));
        }
        Ok(())
    }

    /// `\` at the end of a line joins it with the next one.
    fn continuation(&mut self) -> Result<(), SyntaxError> {
        let at = self.here();
        self.bump();
        if self.peek() != Some('\n') {
            return Err(error_at(
                at,
                "unexpected character after the line continuation `\\` (it must end its line)",
            ));
        }
        self.bump();
        if self.peek().is_none() {
            return Err(error_at(
                at,
                "the file ends right after a line continuation `\\`",
            ));
        }
        Ok(())
    }

    fn token_at(&mut self, c: char, start: (usize, usize)) -> Result<Tok, SyntaxError> {
        if c == '_' || c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic()) {
            let mut name = String::new();
            while let Some(c) = self.peek() {
                if c == '_' || c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric()) {
                    name.push(c);
                    self.bump();
                } else {
                    break;
                }
            }
            if matches!(self.peek(), Some('\'' | '"')) {
                let prefix = name.to_ascii_lowercase();
                if matches!(prefix.as_str(), "f" | "fr" | "rf") {
                    return Err(error_at(
                        start,
                        format!("f-strings are not allowed; {ONLY_LITERALS}"),
                    ));
                }
                if matches!(prefix.as_str(), "r" | "u" | "b" | "br" | "rb") {
                    return self.string(start, prefix.contains('r'), prefix.contains('b'));
                }
            }
            return Ok(Tok::Name(name));
        }
        match c {
            '\'' | '"' => self.string(start, false, false),
            '0'..='9' => self.number(start),
            '.' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(start),
            _ => {
                for op in OPERATORS {
                    let n = op.chars().count();
                    if op
                        .chars()
                        .enumerate()
                        .all(|(i, o)| self.peek_at(i) == Some(o))
                    {
                        for _ in 0..n {
                            self.bump();
                        }
                        match *op {
                            "(" | "[" | "{" => self.level += 1,
                            ")" | "]" | "}" => self.level = self.level.saturating_sub(1),
                            _ => {}
                        }
                        return Ok(Tok::Op(op));
                    }
                }
                self.bump();
                Ok(Tok::Other(c))
            }
        }
    }

    /// A string or bytes literal from its opening quote; `start` is where
    /// its prefix begins.
    fn string(
        &mut self,
        start: (usize, usize),
        raw: bool,
        bytes: bool,
    ) -> Result<Tok, SyntaxError> {
        let quote = self.bump().unwrap_or('\'');
        let triple = self.peek() == Some(quote) && self.peek_at(1) == Some(quote);
        if triple {
            self.bump();
            self.bump();
        }
        let mut s = String::new();
        let mut b = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(error_at(start, "this string is never closed"));
            };
            if c == quote
                && (!triple || (self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote)))
            {
                for _ in 0..if triple { 3 } else { 1 } {
                    self.bump();
                }
                return Ok(if bytes { Tok::Bytes(b) } else { Tok::Str(s) });
            }
            if c == '\n' && !triple {
                return Err(error_at(
                    start,
                    "this string is never closed (it reaches the end of the line)",
                ));
            }
            let at = self.here();
            self.bump();
            if bytes && !c.is_ascii() {
                return Err(self.non_ascii_in_bytes(at, c));
            }
            if c != '\\' {
                s.push(c);
                b.push(c as u8);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err(error_at(start, "this string is never closed"));
            };
            if bytes && !e.is_ascii() {
                return Err(self.non_ascii_in_bytes(self.here(), e));
            }
            self.bump();
            if raw {
                // Raw strings keep the backslash; it still escapes a quote.
                s.push('\\');
                s.push(e);
                b.push(b'\\');
                b.push(e as u8);
                continue;
            }
            let simple = match e {
                '\n' => Some(None),
                '\\' => Some(Some('\\')),
                '\'' => Some(Some('\'')),
                '"' => Some(Some('"')),
                'n' => Some(Some('\n')),
                't' => Some(Some('\t')),
                'r' => Some(Some('\r')),
                'a' => Some(Some('\x07')),
                'b' => Some(Some('\x08')),
                'f' => Some(Some('\x0c')),
                'v' => Some(Some('\x0b')),
                _ => None,
            };
            if let Some(ch) = simple {
                if let Some(ch) = ch {
                    s.push(ch);
                    b.push(ch as u8);
                }
                continue;
            }
            match e {
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
                    // At most 0o777: always a character; bytes keep the low 8 bits.
                    s.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    b.push((v & 0xff) as u8);
                }
                'x' => {
                    let v = self.hex_digits(at, e, 2)?;
                    s.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    b.push(v as u8);
                }
                'u' | 'U' if !bytes => {
                    let v = self.hex_digits(at, e, if e == 'u' { 4 } else { 8 })?;
                    if (0xd800..0xe000).contains(&v) {
                        return Err(error_at(
                            at,
                            format!(
                                "`\\{e}{v:04x}` is a lone surrogate, which AIGIS cannot hold in a string"
                            ),
                        ));
                    }
                    s.push(char::from_u32(v).ok_or_else(|| {
                        error_at(at, format!("`\\{e}{v:x}` is not a valid character"))
                    })?);
                }
                'N' if !bytes => {
                    return Err(error_at(
                        at,
                        "`\\N{...}` escapes are not supported: write the character itself",
                    ))
                }
                other => {
                    // Not an escape: Python keeps the backslash.
                    s.push('\\');
                    s.push(other);
                    b.push(b'\\');
                    b.push(other as u8);
                }
            }
        }
    }

    fn non_ascii_in_bytes(&self, at: (usize, usize), c: char) -> SyntaxError {
        error_at(
            at,
            format!("`{c}` in a bytes literal: bytes can only contain ASCII characters (write it as `\\x..` escapes)"),
        )
    }

    fn hex_digits(&mut self, at: (usize, usize), e: char, n: usize) -> Result<u32, SyntaxError> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self
                .peek()
                .and_then(|d| d.to_digit(16))
                .ok_or_else(|| error_at(at, format!("`\\{e}` needs {n} hex digits")))?;
            v = v.wrapping_mul(16).wrapping_add(d);
            self.bump();
        }
        Ok(v)
    }

    /// A number, following Python's tokenizer: underscores only between
    /// digits, no leading zeros on decimal ints, nothing name-like after it.
    fn number(&mut self, start: (usize, usize)) -> Result<Tok, SyntaxError> {
        let from = self.pos;
        let bad = |lx: &Lexer| {
            let text: String = lx.chars[from..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == '.')
                .collect();
            error_at(start, format!("`{text}` is not a number"))
        };
        let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
        let first = self.peek().unwrap_or('0');
        let radix = match self.peek_at(1) {
            Some('x' | 'X') if first == '0' => 16,
            Some('o' | 'O') if first == '0' => 8,
            Some('b' | 'B') if first == '0' => 2,
            _ => 10,
        };
        if radix != 10 {
            self.bump();
            self.bump();
            loop {
                if self.peek() == Some('_') {
                    self.bump();
                }
                if !self.peek().is_some_and(|c| c.is_digit(radix)) {
                    return Err(bad(self));
                }
                while self.peek().is_some_and(|c| c.is_digit(radix)) {
                    self.bump();
                }
                if self.peek() != Some('_') {
                    break;
                }
            }
            self.end_of_number(&bad)?;
            let digits: String = self.chars[from + 2..self.pos]
                .iter()
                .filter(|&&c| c != '_')
                .collect();
            return match radix_to_decimal(&digits, radix) {
                Some(d) => Ok(Tok::Int(d)),
                None => Err(error_at(
                    start,
                    format!(
                        "this int is too large: AIGIS.config ints are limited to {MAX_INT_DIGITS} decimal digits"
                    ),
                )),
            };
        }
        // The integer part.
        let mut leading_zero = false;
        if first == '0' {
            loop {
                match self.peek() {
                    Some('0') => {
                        self.bump();
                    }
                    Some('_') => {
                        self.bump();
                        if !digit(self.peek()) {
                            return Err(bad(self));
                        }
                    }
                    _ => break,
                }
            }
            if digit(self.peek()) {
                leading_zero = true;
                self.decimal_tail(&bad)?;
            }
        } else if first != '.' {
            self.decimal_tail(&bad)?;
        }
        let mut float = false;
        if self.peek() == Some('.') {
            self.bump();
            float = true;
            if digit(self.peek()) {
                self.decimal_tail(&bad)?;
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = matches!(self.peek_at(1), Some('+' | '-'));
            if !digit(self.peek_at(if sign { 2 } else { 1 })) {
                return Err(bad(self));
            }
            self.bump();
            if sign {
                self.bump();
            }
            self.decimal_tail(&bad)?;
            float = true;
        }
        let imaginary = matches!(self.peek(), Some('j' | 'J'));
        if imaginary {
            self.bump();
        }
        self.end_of_number(&bad)?;
        let text: String = self.chars[from..self.pos]
            .iter()
            .filter(|&&c| c != '_' && c != 'j' && c != 'J')
            .collect();
        if imaginary || float {
            let v: f64 = text.parse().map_err(|_| bad(self))?;
            return Ok(if imaginary {
                Tok::Imag(v)
            } else {
                Tok::Float(v)
            });
        }
        if leading_zero {
            let text: String = self.chars[from..self.pos].iter().collect();
            return Err(error_at(
                start,
                format!(
                    "`{text}`: leading zeros are not allowed in Python ints (write 0o{} for octal)",
                    text.trim_start_matches(['0', '_'])
                ),
            ));
        }
        let digits = text.trim_start_matches('0');
        if digits.len() > MAX_INT_DIGITS {
            return Err(error_at(
                start,
                format!(
                    "this int has {} digits; Python refuses int literals longer than {MAX_INT_DIGITS} digits",
                    digits.len()
                ),
            ));
        }
        Ok(Tok::Int(if digits.is_empty() {
            "0".into()
        } else {
            digits.into()
        }))
    }

    /// Digits with single underscores between them, from a digit.
    fn decimal_tail(&mut self, bad: &dyn Fn(&Lexer) -> SyntaxError) -> Result<(), SyntaxError> {
        loop {
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            if self.peek() != Some('_') {
                return Ok(());
            }
            self.bump();
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(bad(self));
            }
        }
    }

    /// A number must not run into a name (`1x`, `0b12`, `1_`).
    fn end_of_number(&self, bad: &dyn Fn(&Lexer) -> SyntaxError) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(c) if c == '_' || c.is_ascii_alphanumeric() || !c.is_ascii() => Err(bad(self)),
            _ => Ok(()),
        }
    }
}

/// `digits` (no underscores) in `radix`, as decimal text without leading
/// zeros; `None` past [`MAX_INT_DIGITS`] decimal digits.
fn radix_to_decimal(digits: &str, radix: u32) -> Option<String> {
    let digits = digits.trim_start_matches('0');
    let bits_per_digit = match radix {
        16 => 4,
        8 => 3,
        _ => 1,
    };
    // 10^4300 < 2^14285: anything with more bits is too large.
    if digits.len() * bits_per_digit > 14_300 {
        return None;
    }
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = vec![0]; // little-endian, base 10^9
    for c in digits.chars() {
        let mut carry = u64::from(c.to_digit(radix)?);
        for limb in limbs.iter_mut() {
            let v = *limb * u64::from(radix) + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut out = String::new();
    let mut iter = limbs.iter().rev();
    out.push_str(&iter.next().copied().unwrap_or(0).to_string());
    for limb in iter {
        out.push_str(&format!("{limb:09}"));
    }
    (out.len() <= MAX_INT_DIGITS).then_some(out)
}

/// `Int` when it fits in `i64`, else `BigInt`.
fn int_value(negative: bool, digits: &str) -> Value {
    let text = if negative && digits != "0" {
        format!("-{digits}")
    } else {
        digits.to_string()
    };
    match text.parse::<i64>() {
        Ok(i) => Value::Int(i),
        Err(_) => Value::BigInt(text),
    }
}

// ---------------------------------------------------------------------------
// Parser

/// What an expression is in Python's AST, which decides what
/// `literal_eval` lets it take part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A constant: number, string, bytes, bool, None, `...`.
    Const,
    /// `+` or `-` applied to a number constant.
    Signed,
    /// `real + imaginary` or `real - imaginary`.
    Sum,
    /// Tuple, list, dict, set, `set()`.
    Container,
    /// The bare name `set`, only valid when called: `(set)()`.
    SetName,
}

struct Parsed {
    value: Spanned,
    kind: Kind,
}

struct Parser {
    lx: Lexer,
    ahead: VecDeque<Result<Token, SyntaxError>>,
    /// Brackets currently open.
    depth: usize,
}

impl Parser {
    fn fill(&mut self, n: usize) {
        while self.ahead.len() <= n {
            let t = self.lx.next_token();
            self.ahead.push_back(t);
        }
    }

    fn peek(&mut self) -> Result<&Token, SyntaxError> {
        self.fill(0);
        match &self.ahead[0] {
            Ok(t) => Ok(t),
            Err(e) => Err(e.clone()),
        }
    }

    fn bump(&mut self) -> Result<Token, SyntaxError> {
        self.fill(0);
        self.ahead
            .pop_front()
            .unwrap_or_else(|| Err(error_at((0, 0), "no token")))
    }

    /// Whether the next tokens are `NAME =` starting a line: a new
    /// statement, so an open bracket before it was never closed.
    fn starts_assignment(&mut self) -> bool {
        self.fill(1);
        matches!(
            &self.ahead[0],
            Ok(Token {
                tok: Tok::Name(_),
                first_on_line: true,
                ..
            })
        ) && matches!(&self.ahead[1], Ok(t) if t.is_op("="))
    }

    fn file(&mut self) -> Result<Vec<Assignment>, SyntaxError> {
        let mut out = Vec::new();
        loop {
            let t = self.peek()?;
            match t.tok {
                Tok::End => return Ok(out),
                Tok::Newline => {
                    self.bump()?;
                    continue;
                }
                _ => {}
            }
            let name = self.statement(&mut out)?;
            let t = self.peek()?;
            if t.is_op(";") {
                self.bump()?;
                if matches!(self.peek()?.tok, Tok::Newline) {
                    self.bump()?;
                }
            } else if matches!(t.tok, Tok::Newline) {
                self.bump()?;
            } else if !matches!(t.tok, Tok::End) {
                let mut e = error_at(
                    t.pos(),
                    format!(
                        "unexpected {} after the value; {ONLY_LITERALS}, one assignment per line",
                        t.shown()
                    ),
                );
                e.option = name;
                return Err(e);
            }
        }
    }

    /// One statement; returns the option it assigns, if any.
    fn statement(&mut self, out: &mut Vec<Assignment>) -> Result<Option<String>, SyntaxError> {
        let t = self.peek()?;
        let pos = t.pos();
        match &t.tok {
            Tok::Name(name) => {
                let name = name.clone();
                self.check_name(&name, pos)?;
                self.bump()?;
                self.assignment(name, pos, out).map(Some)
            }
            Tok::Str(_) | Tok::Bytes(_) => {
                let s = self.strings()?;
                self.bare_string(&s)?;
                Ok(None)
            }
            Tok::Op("(") => self.parenthesized_statement(out),
            _ => Err(error_at(
                pos,
                format!(
                    "expected an option name, found {}; each line is `NAME = value`",
                    t.shown()
                ),
            )),
        }
    }

    fn check_name(&self, name: &str, pos: (usize, usize)) -> Result<(), SyntaxError> {
        if PY_KEYWORDS.contains(&name) {
            return Err(error_at(
                pos,
                format!("`{name}` is a Python keyword, not an option name; {ONLY_LITERALS}, as `NAME = value`"),
            ));
        }
        if !name.is_ascii() {
            return Err(error_at(
                pos,
                format!("`{name}`: option names must be ASCII letters, digits and `_`"),
            ));
        }
        Ok(())
    }

    /// A bare string statement (a docstring) is fine; bytes are not.
    fn bare_string(&self, s: &Spanned) -> Result<(), SyntaxError> {
        match s.value {
            Value::Str(_) => Ok(()),
            _ => Err(error_at(
                (s.line, s.column),
                format!(
                    "a bare bytes literal is not a statement; {ONLY_LITERALS}, as `NAME = value`"
                ),
            )),
        }
    }

    /// `(NAME) = value` or `("docstring")`: Python drops the parentheses.
    fn parenthesized_statement(
        &mut self,
        out: &mut Vec<Assignment>,
    ) -> Result<Option<String>, SyntaxError> {
        let mut opens = Vec::new();
        while let Ok(t) = self.peek() {
            if !t.is_op("(") {
                break;
            }
            let pos = t.pos();
            self.open(pos)?;
            self.bump()?;
            opens.push(pos);
        }
        let t = self.peek()?;
        let pos = t.pos();
        let inner = match &t.tok {
            Tok::Name(name) => {
                let name = name.clone();
                self.check_name(&name, pos)?;
                self.bump()?;
                Ok((name, pos))
            }
            Tok::Str(_) | Tok::Bytes(_) => Err(self.strings()?),
            _ => {
                return Err(error_at(
                    pos,
                    format!(
                        "expected an option name, found {}; each line is `NAME = value`",
                        t.shown()
                    ),
                ))
            }
        };
        for open in opens.iter().rev() {
            let t = self.peek()?;
            if !t.is_op(")") {
                if matches!(t.tok, Tok::End) {
                    return Err(self.unclosed(*open, ")"));
                }
                return Err(error_at(
                    t.pos(),
                    format!(
                        "expected `)`, found {} (the bracket on line {}, column {} is still open); {ONLY_LITERALS}, as `NAME = value`",
                        t.shown(),
                        open.0,
                        open.1
                    ),
                ));
            }
            self.bump()?;
            self.depth -= 1;
        }
        match inner {
            Ok((name, pos)) => self.assignment(name, pos, out).map(Some),
            Err(s) => self.bare_string(&s).map(|_| None),
        }
    }

    fn assignment(
        &mut self,
        name: String,
        (line, column): (usize, usize),
        out: &mut Vec<Assignment>,
    ) -> Result<String, SyntaxError> {
        let t = self.peek()?;
        if !t.is_op("=") {
            return Err(error_at(
                t.pos(),
                format!("expected `=` after `{name}`; {ONLY_LITERALS}, as `NAME = value`"),
            ));
        }
        self.bump()?;
        let value = self.assigned_value(&name).map_err(|mut e| {
            e.option = Some(name.clone());
            e
        })?;
        out.push(Assignment {
            name: name.clone(),
            line,
            column,
            value,
        });
        Ok(name)
    }

    /// The value of `NAME = value`: an expression, or a tuple without
    /// parentheses (`NAME = a, b`).
    fn assigned_value(&mut self, name: &str) -> Result<Spanned, SyntaxError> {
        let t = self.peek()?;
        if t.is_end() || t.is_op(";") {
            return Err(error_at(t.pos(), format!("missing value after `{name} =`")));
        }
        let first = self.expr()?;
        if !self.peek()?.is_op(",") {
            return Ok(first);
        }
        let (line, column) = (first.line, first.column);
        let mut items = vec![first];
        while self.peek()?.is_op(",") {
            self.bump()?;
            let t = self.peek()?;
            if t.is_end() || t.is_op(";") {
                break;
            }
            items.push(self.expr()?);
        }
        Ok(Spanned {
            value: Value::Tuple(items),
            line,
            column,
        })
    }

    /// One expression of the kinds `literal_eval` may accept; anything else
    /// is refused where it starts.
    ///
    /// Iterative, with the open brackets and pending operators on an explicit
    /// stack: the Rust stack does not grow with the nesting of the input.
    fn expr(&mut self) -> Result<Spanned, SyntaxError> {
        let mut stack: Vec<Ctx> = Vec::new();
        'operand: loop {
            // An operand starts here.
            let t = self.peek()?;
            let pos = t.pos();
            let mut v = match t.tok {
                Tok::Op(sign @ ("+" | "-")) => {
                    self.bump()?;
                    let t = self.peek()?;
                    let starts_number = match t.tok {
                        Tok::Newline | Tok::End => false,
                        Tok::Op(op) => matches!(op, "(" | "[" | "{" | "..."),
                        _ => true,
                    };
                    if !starts_number {
                        return Err(sign_refused(pos, sign));
                    }
                    stack.push(Ctx::Sign { at: pos, sign });
                    continue 'operand;
                }
                Tok::Op(op @ ("(" | "[" | "{")) => {
                    let close = match op {
                        "(" => ")",
                        "[" => "]",
                        _ => "}",
                    };
                    self.open(pos)?;
                    self.bump()?;
                    if self.peek()?.is_op(close) {
                        self.bump()?;
                        self.depth -= 1;
                        container(
                            match op {
                                "(" => Value::Tuple(Vec::new()),
                                "[" => Value::List(Vec::new()),
                                _ => Value::Dict(Vec::new()),
                            },
                            pos,
                        )
                    } else {
                        if self.at_unclosed()? {
                            return Err(self.unclosed(pos, close));
                        }
                        stack.push(match op {
                            "(" => Ctx::Paren {
                                open: pos,
                                items: Vec::new(),
                            },
                            "[" => Ctx::List {
                                open: pos,
                                items: Vec::new(),
                            },
                            _ => Ctx::Brace { open: pos },
                        });
                        continue 'operand;
                    }
                }
                _ => self.atom()?,
            };
            // A value is complete: apply what waits for it, then put it in
            // its container.
            loop {
                v = self.postfix(v)?;
                if v.kind == Kind::SetName {
                    // `(set)()`: only the sole item of a closing `(`.
                    let sole =
                        matches!(stack.last(), Some(Ctx::Paren { items, .. }) if items.is_empty());
                    if !(sole && self.peek()?.is_op(")")) {
                        return Err(error_at(
                            (v.value.line, v.value.column),
                            format!("`set` is a name, not a value; {ONLY_LITERALS} (`set()` is the empty set)"),
                        ));
                    }
                }
                match stack.last() {
                    Some(Ctx::Sign { .. }) => {
                        if let Some(Ctx::Sign { at, sign }) = stack.pop() {
                            v = apply_sign(at, sign, v)?;
                        }
                    }
                    Some(Ctx::Sum { .. }) => {
                        if let Some(Ctx::Sum { left, re, op, at }) = stack.pop() {
                            v = complex_sum(left, re, op, at, v)?;
                        }
                    }
                    _ => {}
                }
                let t = self.peek()?;
                if let Tok::Op(op @ ("+" | "-")) = t.tok {
                    let at = t.pos();
                    // literal_eval's one binary operation: a real number plus
                    // or minus an imaginary one, which writes a complex.
                    let re = real_part(&v, op, at)?;
                    self.bump()?;
                    if matches!(self.peek()?.tok, Tok::Op("+" | "-" | "~")) {
                        return Err(not_evaluated(at, op));
                    }
                    stack.push(Ctx::Sum {
                        left: v.value,
                        re,
                        op,
                        at,
                    });
                    continue 'operand;
                }
                if let Tok::Op(op) = t.tok {
                    if !matches!(op, "," | ":" | ";" | ")" | "]" | "}") {
                        return Err(error_at(
                            t.pos(),
                            format!(
                                "unexpected {} after a value: expressions are not evaluated; {ONLY_LITERALS}",
                                t.shown()
                            ),
                        ));
                    }
                }
                let Some(ctx) = stack.last_mut() else {
                    return Ok(v.value);
                };
                let (open, close) = match ctx {
                    Ctx::Paren { open, items } => {
                        if items.is_empty() && self.peek()?.is_op(")") {
                            // `(x)` is x.
                            self.bump()?;
                            self.depth -= 1;
                            stack.pop();
                            continue;
                        }
                        items.push(v.value);
                        (*open, ")")
                    }
                    Ctx::List { open, items } => {
                        items.push(v.value);
                        (*open, "]")
                    }
                    Ctx::Set { open, items } => {
                        check_hashable(&v.value, "an item of a set")?;
                        items.push(v.value);
                        (*open, "}")
                    }
                    Ctx::Brace { open } => {
                        let open = *open;
                        if self.peek()?.is_op(":") {
                            check_hashable(&v.value, "a dict key")?;
                            *ctx = Ctx::Dict {
                                open,
                                pairs: Vec::new(),
                                key: Some(v.value),
                            };
                            self.bump()?;
                            if self.at_unclosed()? {
                                return Err(self.unclosed(open, "}"));
                            }
                            continue 'operand;
                        }
                        let t = self.peek()?;
                        if !(t.is_op(",") || t.is_op("}")) {
                            if self.at_unclosed()? {
                                return Err(self.unclosed(open, "}"));
                            }
                            let t = self.peek()?;
                            return Err(error_at(
                                t.pos(),
                                "expected `:` between a dict key and its value",
                            ));
                        }
                        check_hashable(&v.value, "an item of a set")?;
                        *ctx = Ctx::Set {
                            open,
                            items: vec![v.value],
                        };
                        (open, "}")
                    }
                    Ctx::Dict { open, pairs, key } => {
                        let open = *open;
                        match key.take() {
                            Some(k) => pairs.push((k, v.value)),
                            None => {
                                // `v` is a key.
                                let t = self.peek()?;
                                if !t.is_op(":") {
                                    if self.at_unclosed()? {
                                        return Err(self.unclosed(open, "}"));
                                    }
                                    let t = self.peek()?;
                                    return Err(error_at(
                                        t.pos(),
                                        "expected `:` between a dict key and its value",
                                    ));
                                }
                                check_hashable(&v.value, "a dict key")?;
                                *key = Some(v.value);
                                self.bump()?;
                                if self.at_unclosed()? {
                                    return Err(self.unclosed(open, "}"));
                                }
                                continue 'operand;
                            }
                        }
                        (open, "}")
                    }
                    Ctx::Sign { .. } | Ctx::Sum { .. } => {
                        return Err(error_at((v.value.line, v.value.column), "internal error"))
                    }
                };
                // After an item: `,` and maybe more, or the closing bracket.
                let t = self.peek()?;
                if t.is_op(",") {
                    self.bump()?;
                    if !self.peek()?.is_op(close) {
                        if self.at_unclosed()? {
                            return Err(self.unclosed(open, close));
                        }
                        continue 'operand;
                    }
                } else if !t.is_op(close) {
                    if self.at_unclosed()? {
                        return Err(self.unclosed(open, close));
                    }
                    let t = self.peek()?;
                    return Err(error_at(
                        t.pos(),
                        format!(
                            "expected `,` or `{close}`, found {} (the bracket on line {}, column {} is still open)",
                            t.shown(),
                            open.0,
                            open.1
                        ),
                    ));
                }
                // The closing bracket.
                self.bump()?;
                self.depth -= 1;
                let value = match stack.pop() {
                    Some(Ctx::Paren { items, .. }) => Value::Tuple(items),
                    Some(Ctx::List { items, .. }) => Value::List(items),
                    Some(Ctx::Set { items, .. }) => Value::Set(items),
                    Some(Ctx::Dict { pairs, .. }) => Value::Dict(pairs),
                    _ => Value::None,
                };
                v = container(value, open);
            }
        }
    }

    /// What follows an atom: only `set` may be called, with no arguments;
    /// subscripts, attributes and other calls are refused.
    fn postfix(&mut self, mut p: Parsed) -> Result<Parsed, SyntaxError> {
        loop {
            let t = self.peek()?;
            let pos = t.pos();
            if t.is_op("(") && p.kind == Kind::SetName {
                self.open(pos)?;
                self.bump()?;
                let t = self.peek()?;
                if !t.is_op(")") {
                    return Err(error_at(
                        t.pos(),
                        format!("only the empty call `set()` is allowed; {ONLY_LITERALS}"),
                    ));
                }
                self.bump()?;
                self.depth -= 1;
                p = container(Value::Set(Vec::new()), (p.value.line, p.value.column));
            } else if t.is_op("(") || t.is_op("[") || t.is_op(".") {
                return Err(error_at(
                    pos,
                    format!(
                        "unexpected {} after a value: expressions are not evaluated; {ONLY_LITERALS}",
                        t.shown()
                    ),
                ));
            } else {
                return Ok(p);
            }
        }
    }

    /// A number, string, constant name or `...` (brackets are `expr`'s).
    fn atom(&mut self) -> Result<Parsed, SyntaxError> {
        let t = self.peek()?;
        let pos = t.pos();
        let constant = |value| Parsed {
            value: Spanned {
                value,
                line: pos.0,
                column: pos.1,
            },
            kind: Kind::Const,
        };
        let value = match &t.tok {
            Tok::Int(d) => int_value(false, d),
            Tok::Float(f) => Value::Float(*f),
            Tok::Imag(f) => Value::Complex { re: 0.0, im: *f },
            Tok::Str(_) | Tok::Bytes(_) => return Ok(constant(self.strings()?.value)),
            Tok::Name(n) => match n.as_str() {
                "True" => Value::Bool(true),
                "False" => Value::Bool(false),
                "None" => Value::None,
                "set" => {
                    self.bump()?;
                    return Ok(Parsed {
                        kind: Kind::SetName,
                        ..constant(Value::None)
                    });
                }
                _ => {
                    return Err(error_at(
                        pos,
                        format!("`{n}` is a name, not a value; {ONLY_LITERALS} (quote it if it is a string)"),
                    ))
                }
            },
            Tok::Op("...") => Value::Ellipsis,
            Tok::Newline | Tok::End => {
                return Err(error_at(pos, format!("expected a value, found {}", t.shown())))
            }
            _ => {
                return Err(error_at(
                    pos,
                    format!("unexpected {}; expected a value: {ONLY_LITERALS}", t.shown()),
                ))
            }
        };
        self.bump()?;
        Ok(constant(value))
    }

    /// Opens a bracket at `pos`, refusing to nest deeper than `MAX_DEPTH`.
    fn open(&mut self, pos: (usize, usize)) -> Result<(), SyntaxError> {
        if self.depth >= MAX_DEPTH {
            return Err(error_at(
                pos,
                format!("nesting deeper than {MAX_DEPTH} levels of brackets"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    /// An error at an opening bracket that is never closed.
    fn unclosed(&mut self, open: (usize, usize), close: &str) -> SyntaxError {
        let opening = match close {
            "]" => '[',
            ")" => '(',
            _ => '{',
        };
        let found = match self.peek() {
            Ok(t) if matches!(t.tok, Tok::End) => "the end of the file".to_string(),
            Ok(t) => format!("line {}, column {}", t.line, t.column),
            Err(e) => return e,
        };
        error_at(
            open,
            format!("this `{opening}` is never closed (expected `{close}` before {found})"),
        )
    }

    /// Whether an open bracket can no longer be closed: the file ends, or
    /// a new `NAME =` statement starts.
    fn at_unclosed(&mut self) -> Result<bool, SyntaxError> {
        Ok(matches!(self.peek()?.tok, Tok::End) || self.starts_assignment())
    }

    /// One or more adjacent string literals, concatenated; str and bytes
    /// do not mix.
    fn strings(&mut self) -> Result<Spanned, SyntaxError> {
        let first = self.bump()?;
        let (line, column) = first.pos();
        let mut value = match first.tok {
            Tok::Str(s) => Value::Str(s),
            Tok::Bytes(b) => Value::Bytes(b),
            _ => return Err(error_at((line, column), "expected a string")),
        };
        loop {
            let t = self.peek()?;
            let pos = t.pos();
            match (&mut value, &t.tok) {
                (Value::Str(s), Tok::Str(more)) => s.push_str(more),
                (Value::Bytes(b), Tok::Bytes(more)) => b.extend_from_slice(more),
                (_, Tok::Str(_) | Tok::Bytes(_)) => {
                    return Err(error_at(
                        pos,
                        "cannot mix bytes and str literals in one implicit concatenation",
                    ))
                }
                _ => {
                    return Ok(Spanned {
                        value,
                        line,
                        column,
                    })
                }
            }
            self.bump()?;
        }
    }
}

fn container(value: Value, (line, column): (usize, usize)) -> Parsed {
    Parsed {
        value: Spanned {
            value,
            line,
            column,
        },
        kind: Kind::Container,
    }
}

/// What `Parser::expr` is inside of, innermost last.
enum Ctx {
    /// `+` or `-`, waiting for its number.
    Sign {
        at: (usize, usize),
        sign: &'static str,
    },
    /// `real +` or `real -`, waiting for the imaginary part.
    Sum {
        left: Spanned,
        re: f64,
        op: &'static str,
        at: (usize, usize),
    },
    /// `(`: one item and no comma is just that item.
    Paren {
        open: (usize, usize),
        items: Vec<Spanned>,
    },
    List {
        open: (usize, usize),
        items: Vec<Spanned>,
    },
    /// `{` before its first item says whether it is a dict or a set.
    Brace { open: (usize, usize) },
    Set {
        open: (usize, usize),
        items: Vec<Spanned>,
    },
    /// `key` is a key waiting for its value.
    Dict {
        open: (usize, usize),
        pairs: Vec<(Spanned, Spanned)>,
        key: Option<Spanned>,
    },
}

fn sign_refused(at: (usize, usize), sign: &str) -> SyntaxError {
    error_at(
        at,
        format!("`{sign}` must be followed by a number; {ONLY_LITERALS}"),
    )
}

fn not_evaluated(at: (usize, usize), op: &str) -> SyntaxError {
    error_at(
        at,
        format!("unexpected `{op}` after a value: expressions are not evaluated; {ONLY_LITERALS}"),
    )
}

/// `+x` / `-x`: only on one number constant (not a bool).
fn apply_sign(at: (usize, usize), sign: &str, operand: Parsed) -> Result<Parsed, SyntaxError> {
    if operand.kind != Kind::Const {
        return Err(sign_refused(at, sign));
    }
    let negative = sign == "-";
    let value = match operand.value.value {
        // Constants are never negative: `-` is a separate token.
        Value::Int(i) => int_value(negative, &i.to_string()),
        Value::BigInt(s) => int_value(negative, &s),
        Value::Float(f) => Value::Float(if negative { -f } else { f }),
        Value::Complex { re, im } if negative => Value::Complex { re: -re, im: -im },
        v @ Value::Complex { .. } => v,
        _ => return Err(sign_refused(at, sign)),
    };
    Ok(Parsed {
        value: Spanned {
            value,
            line: at.0,
            column: at.1,
        },
        kind: Kind::Signed,
    })
}

/// The left side of `real ± imaginary` as a float, as Python converts it.
fn real_part(left: &Parsed, op: &str, at: (usize, usize)) -> Result<f64, SyntaxError> {
    if !matches!(left.kind, Kind::Const | Kind::Signed) {
        return Err(not_evaluated(at, op));
    }
    match &left.value.value {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        Value::BigInt(s) => match s.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err(error_at(
                (left.value.line, left.value.column),
                "this int is too large to convert to a float (the real part of a complex number)",
            )),
        },
        _ => Err(not_evaluated(at, op)),
    }
}

/// `real ± imaginary`: Python adds complex(re, 0.0) and complex(0.0, im).
fn complex_sum(
    left: Spanned,
    re: f64,
    op: &str,
    at: (usize, usize),
    right: Parsed,
) -> Result<Parsed, SyntaxError> {
    let im = match (right.kind, right.value.value) {
        (Kind::Const, Value::Complex { im, .. }) => im,
        _ => return Err(not_evaluated(at, op)),
    };
    let value = if op == "+" {
        Value::Complex {
            re: re + 0.0,
            im: 0.0 + im,
        }
    } else {
        Value::Complex {
            re: re - 0.0,
            im: 0.0 - im,
        }
    };
    Ok(Parsed {
        value: Spanned {
            value,
            line: left.line,
            column: left.column,
        },
        kind: Kind::Sum,
    })
}

fn check_hashable(v: &Spanned, role: &str) -> Result<(), SyntaxError> {
    match unhashable_part(&v.value) {
        None => Ok(()),
        Some(what) => Err(error_at(
            (v.line, v.column),
            format!(
                "{} cannot be {role}: {what} is unhashable (Python raises TypeError); use a tuple",
                v.value.type_name()
            ),
        )),
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
        assert!(parse("# only a comment\n\n").unwrap().is_empty());
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
            ("A = 'a' b'x'\n", (1, 9), "cannot mix bytes and str"),
            ("import os\n", (1, 1), "`import` is a Python keyword"),
            (
                "from os import path\n",
                (1, 1),
                "`from` is a Python keyword",
            ),
            ("A = +-3\n", (1, 5), "`+` must be followed by a number"),
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
            ("A = 1jj\n", (1, 5), "not a number"),
            ("A = 1__0\n", (1, 5), "not a number"),
            ("A = rb'\u{e9}'\n", (1, 8), "bytes can only contain ASCII"),
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
            (
                "A = 1 + 2j + 3j\n",
                (1, 12),
                "expressions are not evaluated",
            ),
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

    fn names(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .map(|a| a.name)
            .collect()
    }

    fn complex(re: f64, im: f64) -> Value {
        Value::Complex { re, im }
    }

    /// Floats compared bit for bit (so -0.0 is not 0.0).
    fn same_complex(v: &Value, re: f64, im: f64) -> bool {
        matches!(v, Value::Complex { re: r, im: i } if r.to_bits() == re.to_bits() && i.to_bits() == im.to_bits())
    }

    #[test]
    fn bytes_big_ints_complex_sets_ellipsis() {
        assert_eq!(
            one(r"b'a\x00\xff\777\u00e9'"),
            Value::Bytes(b"a\x00\xff\xff\\u00e9".to_vec())
        );
        assert_eq!(
            one(r#"rb'\d' Br'x' b"" BR'''y'''"#),
            Value::Bytes(b"\\dxy".to_vec())
        );
        assert_eq!(
            one("99999999999999999999"),
            Value::BigInt("99999999999999999999".into())
        );
        assert_eq!(
            one("-99_999_999_999_999_999_999"),
            Value::BigInt("-99999999999999999999".into())
        );
        assert_eq!(one("9223372036854775807"), Value::Int(i64::MAX));
        assert_eq!(one("-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(
            one("9223372036854775808"),
            Value::BigInt("9223372036854775808".into())
        );
        assert_eq!(
            one("0xFFFF_FFFF_FFFF_FFFF"),
            Value::BigInt("18446744073709551615".into())
        );
        assert_eq!(
            one("0o1777777777777777777777"),
            Value::BigInt("18446744073709551615".into())
        );
        assert_eq!(
            one(&format!("-0b1{}", "0".repeat(63))),
            Value::Int(i64::MIN)
        );
        assert_eq!(one(&"9".repeat(4300)), Value::BigInt("9".repeat(4300)));
        assert_eq!(one(&"0".repeat(5000)), Value::Int(0));
        assert_eq!(one("1e999"), Value::Float(f64::INFINITY));
        assert_eq!(one("-1e999"), Value::Float(f64::NEG_INFINITY));
        assert_eq!(one("1_0.5_0e-1_0"), Value::Float(10.5e-10));
        assert_eq!(one("2j"), complex(0.0, 2.0));
        assert_eq!(one("1.5J"), complex(0.0, 1.5));
        assert_eq!(one("09j"), complex(0.0, 9.0));
        assert_eq!(one("1 + 2j"), complex(1.0, 2.0));
        assert_eq!(one("-1.5-2e3j"), complex(-1.5, -2000.0));
        assert_eq!(one("(1)+(2j)"), complex(1.0, 2.0));
        assert_eq!(one("-(1) + 2j"), complex(-1.0, 2.0));
        assert_eq!(
            one("1e999 - 1e999j"),
            complex(f64::INFINITY, f64::NEG_INFINITY)
        );
        // Python's signs of zero: complex(re, 0.0) +/- complex(0.0, im).
        assert!(same_complex(&one("-1j"), -0.0, -1.0));
        assert!(same_complex(&one("-0.0 + 0j"), 0.0, 0.0));
        assert!(same_complex(&one("-0.0 - 0j"), -0.0, 0.0));
        assert!(same_complex(&one("+0j"), 0.0, 0.0));
        assert_eq!(one("+3"), Value::Int(3));
        assert_eq!(one("-(1)"), Value::Int(-1));
        assert_eq!(one("+ (2.5)"), Value::Float(2.5));
        assert_eq!(one("-0"), Value::Int(0));
        assert_eq!(one("..."), Value::Ellipsis);
        assert_eq!(one("set()"), Value::Set(vec![]));
        assert_eq!(one("set (\n)"), Value::Set(vec![]));
        assert_eq!(one("((set))()"), Value::Set(vec![]));
        let Value::Set(items) = one("{1, 'a', (2, b'x'), 1}") else {
            panic!()
        };
        let kinds: Vec<_> = items.iter().map(|i| i.value.type_name()).collect();
        assert_eq!(kinds, ["an int", "a string", "a tuple", "an int"]);
        // Repeated keys are all kept, in order; Python keeps the last.
        let Value::Dict(d) = one("{'a': 1, 'a': 2}") else {
            panic!()
        };
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].1.value, Value::Int(2));
        assert_eq!(Value::Set(vec![]).type_name(), "a set");
        assert_eq!(Value::Bytes(vec![]).type_name(), "bytes");
        assert!(!one("(1, [2])").is_hashable());
        assert!(one("(1, (2, 'x'))").is_hashable());
    }

    #[test]
    fn statements_as_python_reads_them() {
        // Docstrings and other bare strings are skipped.
        assert_eq!(
            names(
                "\"\"\"\nAIGIS config for x\n\"\"\"\nA = 1\n'note' \"more\"\n('x'\n 'y')\nB = 2\n"
            ),
            ["A", "B"]
        );
        assert_eq!(names("(A) = 1; ((B)) = 2"), ["A", "B"]);
        assert_eq!(names("A = 1;\nB = 2 ;  # c\n"), ["A", "B"]);
        assert_eq!(
            names("match = 1\ntype = 2\n_ = 3\nprint = 4\n__debug__ = 5\n"),
            ["match", "type", "_", "print", "__debug__"]
        );
        // Line continuations, also at the start of a line; form feeds.
        assert_eq!(names("\\\nA = 1\nB \\\n= \\\n 2\n"), ["A", "B"]);
        assert_eq!(
            names("A = 1\n\x0cB = 2\n  \x0cC = 3\n   \n\t# c\n"),
            ["A", "B", "C"]
        );
        assert_eq!(names("A = 1\n  \\\n\n"), ["A"]);
        // A lone CR ends a line too; a file ending in CRLF may end with `\`
        // (CPython's newline translation adds a newline there).
        assert_eq!(names("A = 1\rB = 2\r"), ["A", "B"]);
        assert_eq!(names("A = 1\r\n\r\n  \\\r\n"), ["A"]);
        assert!(parse("A = 1\n\n  \\\n").is_err());
        // Raw strings keep a `\` + newline; others drop it.
        assert_eq!(one("r'a\\\nb'"), s("a\\\nb"));
        assert_eq!(one("'a\\\nb'"), s("ab"));
        assert_eq!(one(r"'\q\8\é'"), s(r"\q\8\é"));
        assert_eq!(one(r"'\777'"), s("\u{1ff}"));
        assert_eq!(one(r"'\U0010ffff'"), s("\u{10ffff}"));
        assert_eq!(one(r"b'\N{x}'"), Value::Bytes(b"\\N{x}".to_vec()));
    }

    #[test]
    fn python_refuses_these_too() {
        let big_real = format!("A = {} + 1j\n", "9".repeat(400));
        let long_int = format!("A = {}\n", "9".repeat(4301));
        let long_hex = format!("A = 0x{}\n", "f".repeat(3600));
        for (text, pos, needle) in [
            ("A = 1;;\n", (1, 7), "expected an option name, found `;`"),
            (";\n", (1, 1), "expected an option name, found `;`"),
            ("; A = 1\n", (1, 1), "expected an option name"),
            ("  A = 1\n", (1, 3), "unexpected indent"),
            ("A = 1\n\tB = 2\n", (2, 2), "unexpected indent"),
            ("A = 1\n  \\\nB = 2\n", (3, 1), "unexpected indent"),
            ("\\\n  A = 1\n", (2, 3), "unexpected indent"),
            ("A = 1 \\ \n", (1, 7), "after the line continuation"),
            (
                "A = 1\n\\\n",
                (2, 1),
                "ends right after a line continuation",
            ),
            ("42\n", (1, 1), "expected an option name, found `4`"),
            (
                "b'doc'\n",
                (1, 1),
                "a bare bytes literal is not a statement",
            ),
            ("('a', 'b')\n", (1, 5), "expected `)`, found `,`"),
            ("[A] = 1\n", (1, 1), "expected an option name"),
            ("(A, B) = 1, 2\n", (1, 3), "expected `)`, found `,`"),
            ("A, B = 1, 2\n", (1, 2), "expected `=` after `A`"),
            ("A = -True\n", (1, 5), "`-` must be followed by a number"),
            ("A = --1\n", (1, 5), "`-` must be followed by a number"),
            ("A = -(1, 2)\n", (1, 5), "`-` must be followed by a number"),
            ("A = -(1+2j)\n", (1, 5), "`-` must be followed by a number"),
            ("A = 1j + 1\n", (1, 8), "expressions are not evaluated"),
            ("A = 1 + -2j\n", (1, 7), "expressions are not evaluated"),
            ("A = True + 1j\n", (1, 10), "expressions are not evaluated"),
            ("A = 2j * 1\n", (1, 8), "expressions are not evaluated"),
            ("A = 1 + 2j * 3\n", (1, 12), "expressions are not evaluated"),
            (
                "A = 1 + 2j.imag\n",
                (1, 11),
                "expressions are not evaluated",
            ),
            (&big_real, (1, 5), "too large to convert to a float"),
            ("A = set\n", (1, 5), "`set` is a name"),
            ("A = (set, 1)\n", (1, 6), "`set` is a name"),
            ("A = set([])\n", (1, 9), "only the empty call `set()`"),
            ("A = set()()\n", (1, 10), "expressions are not evaluated"),
            ("A = frozenset()\n", (1, 5), "`frozenset` is a name"),
            ("A = {[1]: 2}\n", (1, 6), "a list cannot be a dict key"),
            (
                "A = {(1, {}): 2}\n",
                (1, 6),
                "a tuple cannot be a dict key: a dict is unhashable",
            ),
            (
                "A = {1, set()}\n",
                (1, 9),
                "a set cannot be an item of a set",
            ),
            ("A = {[]}\n", (1, 6), "a list cannot be an item of a set"),
            ("A = {1: 2, 3}\n", (1, 13), "expected `:`"),
            ("A = {1, 2: 3}\n", (1, 10), "expected `,` or `}`"),
            ("A = 'a' b'b'\n", (1, 9), "cannot mix bytes and str"),
            ("A = b'é'\n", (1, 7), "bytes can only contain ASCII"),
            (r"A = '\N{BULLET}'", (1, 6), "write the character itself"),
            (r"A = '\ud800'", (1, 6), "lone surrogate"),
            (r"A = '\U00110000'", (1, 6), "not a valid character"),
            (&long_int, (1, 5), "longer than 4300 digits"),
            (&long_hex, (1, 5), "limited to 4300 decimal digits"),
            ("A = 1_\n", (1, 5), "`1_` is not a number"),
            ("A = 0b12\n", (1, 5), "`0b12` is not a number"),
            ("A = 1e\n", (1, 5), "`1e` is not a number"),
            ("A = 1else 2\n", (1, 5), "not a number"),
            ("A = 1 .real\n", (1, 7), "expressions are not evaluated"),
            ("A = ....\n", (1, 8), "expressions are not evaluated"),
            ("A = (a := 1)\n", (1, 6), "`a` is a name"),
            ("A = 1\x0b\n", (1, 6), "unexpected `\x0b`"),
            ("café = 1\n", (1, 1), "option names must be ASCII"),
            ("A = 1\0\n", (1, 6), "NUL character"),
            ("if True:\n    A = 1\n", (1, 1), "`if` is a Python keyword"),
        ] {
            let e = err(text);
            assert_eq!((e.line, e.column), pos, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn coding_declarations() {
        assert_eq!(one("'é'"), s("é"));
        for ok in [
            "# -*- coding: utf-8 -*-\n",
            "#!/bin/python\n# vim: fileencoding=UTF8\n",
            "# coding=utf-8-sig\n",
            "# coding: U8\n",
            "# coding: utf--\n",
        ] {
            let a = parse(&format!("{ok}A = 'é'\n")).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(a[0].value.value, s("é"), "{ok}");
        }
        // Latin-1 reads each UTF-8 byte as one character, as Python does.
        for latin in [
            "# coding: latin-1\n",
            "\n# -*- coding: ISO-8859-1 -*-\n",
            "# coding: l1\n",
        ] {
            let a = parse(&format!("{latin}A = 'é'\n")).unwrap_or_else(|e| panic!("{latin}: {e}"));
            assert_eq!(a[0].value.value, s("Ã©"), "{latin}");
        }
        assert_eq!(one("'e'  # coding: ascii"), s("e"));
        assert!(err("# coding: ascii\nA = 'é'\n")
            .message
            .contains("non-ASCII"));
        // Only the first two lines; the second only after a comment or blank line.
        assert_eq!(
            parse("A = 'é'\n# coding: latin-1\n").unwrap()[0]
                .value
                .value,
            s("é")
        );
        for (bad, line) in [
            ("# coding: cp1252\n", 1),
            ("#\n# coding: bogus\n", 2),
            ("# coding: utf.8\n", 1),
            ("\u{feff}# coding: latin-1\n", 1),
            ("\u{feff}# coding: utf8\n", 1),
        ] {
            let e = err(&format!("{bad}A = 1\n"));
            assert_eq!((e.line, e.column), (line, 1), "{bad:?}: {e}");
            assert!(e.message.contains("coding declaration"), "{bad:?}: {e}");
        }
    }

    /// `A = ` then `open` n times, `inner`, `close` n times.
    fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
        format!("A = {}{inner}{}\n", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn nesting_is_limited_to_100_brackets() {
        for (open, inner, close) in [("[", "1", "]"), ("(", "1", ")"), ("{1: ", "1", "}")] {
            let text = nested(open, inner, close, MAX_DEPTH);
            parse(&text).unwrap_or_else(|e| panic!("{open}: {e}"));
        }
        for (open, inner, close) in [
            ("[", "1", "]"),
            ("(", "1", ")"),
            ("{1: ", "1", "}"),
            ("{(", "1", ",)}"),
            ("-(", "1", ")"),
            ("[(", "1", ",)]"),
        ] {
            let text = nested(open, inner, close, MAX_DEPTH + 1);
            let e = parse(&text).expect_err(&text);
            // At the bracket that goes one level too deep.
            let col = (0..text.len())
                .find(|&c| text[..=c].matches(['[', '(', '{']).count() == MAX_DEPTH + 1)
                .unwrap_or(0)
                + 1;
            assert_eq!((e.line, e.column), (1, col), "{open}: {e}");
            assert_eq!(e.message, "nesting deeper than 100 levels of brackets");
            assert_eq!(e.option.as_deref(), Some("A"));
        }
        let e = err(&format!("{}A) = 1\n", "(".repeat(101)));
        assert_eq!((e.line, e.column), (1, 101), "{e}");
        assert!(e.message.contains("nesting deeper than 100"), "{e}");
    }

    /// 100 KB of nesting is an error, not a stack overflow, even on a
    /// thread with a small stack: the parser keeps open brackets on the
    /// heap (100 levels fit in 64 KiB of stack in a debug build).
    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let mut inputs = Vec::new();
        for (open, close) in [
            ("[", "]"),
            ("(", ")"),
            ("{1:", "}"),
            ("{", "}"),
            ("-(", ")"),
            ("[{(", ")}]"),
        ] {
            let n = 100_000 / open.len();
            inputs.push(nested(open, "1", close, n));
            inputs.push(format!("A = {}", open.repeat(n)));
            inputs.push(format!("{}A = 1\n", open.repeat(n)));
        }
        let worker = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                for text in &inputs {
                    let e = parse(text).expect_err("deep nesting");
                    assert!(
                        e.message.contains("nesting deeper than 100")
                            || e.message.contains("expected an option name"),
                        "{e}"
                    );
                }
                parse(&nested("[", "1", "]", MAX_DEPTH)).map(|a| a.len())
            })
            .expect("spawn");
        assert_eq!(worker.join().expect("no stack overflow"), Ok(1));
    }
}
