//! Differential test: AIGIS's `pylit` parser against Python itself.
//!
//! Generates a few thousand `AIGIS.config` files with a deterministic PRNG:
//! well-formed ones using every literal form `ast.literal_eval` accepts, and
//! mutations of those (a character deleted, inserted or replaced). Each is
//! parsed here, then `python3` runs once over all of them with
//! `literal_eval_differential.py`, which decides acceptance the AIGIS way
//! and compares the values. Any disagreement fails the test.

mod common;
use common::Rng;

use config::pylit::{self, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const FILES: usize = 3000;

// ---------------------------------------------------------------------------
// Well-formed files

fn digits(r: &Rng, alphabet: &str, n: usize, underscores: bool) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut s = String::new();
    for i in 0..n {
        if i > 0 && underscores && r.chance(15) {
            s.push('_');
        }
        s.push(chars[r.below(chars.len())]);
    }
    s
}

fn int_literal(r: &Rng) -> String {
    let us = r.chance(30);
    match r.below(9) {
        0 => "0".into(),
        1 => r.pick(&["00", "0_0", "000", "0_00"]).into(),
        2 => format!(
            "{}{}",
            r.below(9) + 1,
            digits(r, "0123456789", r.below(4), us)
        ),
        3 => format!(
            "{}{}",
            r.below(9) + 1,
            digits(r, "0123456789", 17 + r.below(30), us)
        ),
        4 => format!(
            "0{}{}{}",
            r.pick(&["x", "X"]),
            if r.chance(20) { "_" } else { "" },
            digits(r, "0123456789abcdefABCDEF", 1 + r.below(24), us)
        ),
        5 => format!(
            "0{}{}{}",
            r.pick(&["o", "O"]),
            if r.chance(20) { "_" } else { "" },
            digits(r, "01234567", 1 + r.below(25), us)
        ),
        6 => format!(
            "0{}{}{}",
            r.pick(&["b", "B"]),
            if r.chance(20) { "_" } else { "" },
            digits(r, "01", 1 + r.below(70), us)
        ),
        7 => r
            .pick(&[
                "9223372036854775807",
                "9223372036854775808",
                "18446744073709551616",
                "0x7fffffffffffffff",
                "0x8000000000000000",
                "0xffffffffffffffff",
            ])
            .into(),
        _ => format!("{}", r.below(1000)),
    }
}

fn digitpart(r: &Rng) -> String {
    let n = 1 + r.below(if r.chance(10) { 25 } else { 4 });
    digits(r, "0123456789", n, r.chance(25))
}

fn float_literal(r: &Rng) -> String {
    let exp = |r: &Rng| {
        format!(
            "{}{}{}",
            r.pick(&["e", "E"]),
            r.pick(&["", "+", "-"]),
            if r.chance(10) {
                r.pick(&["308", "309", "999", "324", "400"]).to_string()
            } else {
                digitpart(r)
            }
        )
    };
    match r.below(8) {
        0 => format!("{}.{}", digitpart(r), digitpart(r)),
        1 => format!(".{}", digitpart(r)),
        2 => format!("{}.", digitpart(r)),
        3 => format!("{}{}", digitpart(r), exp(r)),
        4 => format!("{}.{}{}", digitpart(r), digitpart(r), exp(r)),
        5 => format!(".{}{}", digitpart(r), exp(r)),
        6 => r
            .pick(&[
                "1e999",
                "1.7976931348623157e308",
                "5e-324",
                "2.2250738585072014e-308",
                "0.1",
                "0.0",
                "1e-400",
                "123456789012345678901234567890.5",
            ])
            .into(),
        _ => format!("{}.{}", r.below(100), r.below(100)),
    }
}

fn imag_literal(r: &Rng) -> String {
    let body = if r.chance(40) {
        digitpart(r)
    } else {
        float_literal(r)
    };
    format!("{body}{}", r.pick(&["j", "J"]))
}

fn sign(r: &Rng) -> &'static str {
    r.pick(&["", "", "", "-", "+", "- ", "-", "+ "])
}

fn number(r: &Rng) -> String {
    match r.below(10) {
        0..=3 => format!("{}{}", sign(r), int_literal(r)),
        4..=6 => format!("{}{}", sign(r), float_literal(r)),
        7 => format!("{}{}", sign(r), imag_literal(r)),
        8 => {
            // literal_eval's complex sum: signed real +/- imaginary.
            let real = if r.chance(50) {
                int_literal(r)
            } else {
                float_literal(r)
            };
            let real = if r.chance(15) {
                format!("({}{real})", sign(r))
            } else {
                format!("{}{real}", sign(r))
            };
            let imag = if r.chance(15) {
                format!("({})", imag_literal(r))
            } else {
                imag_literal(r)
            };
            format!(
                "{real}{}{}{}{imag}",
                space(r),
                r.pick(&["+", "-"]),
                space(r)
            )
        }
        _ => format!("{}({})", r.pick(&["-", "+"]), int_literal(r)),
    }
}

fn space(r: &Rng) -> &'static str {
    r.pick(&["", " ", " ", "  ", "\t"])
}

const TEXT: &[&str] = &[
    "a", "b", "Z", "0", "9", " ", " ", "_", "-", "/", "{root}", ".", ",", ":", "#", "(", "]", "é",
    "中", "🎉", "ß", "\u{7f}", "\u{1}", "Ω", "plugin", "x y", "\t",
];

const STR_ESCAPES: &[&str] = &[
    "\\n",
    "\\t",
    "\\\\",
    "\\'",
    "\\\"",
    "\\x41",
    "\\xe9",
    "\\xFF",
    "\\u00e9",
    "\\u4E2D",
    "\\U0001F389",
    "\\U00000041",
    "\\101",
    "\\0",
    "\\7",
    "\\777",
    "\\12",
    "\\q",
    "\\d",
    "\\a",
    "\\b",
    "\\f",
    "\\v",
    "\\r",
    "\\8",
    "\\ ",
    "\\\n",
    "\\é",
];

const BYTES_ESCAPES: &[&str] = &[
    "\\n",
    "\\t",
    "\\\\",
    "\\'",
    "\\\"",
    "\\x41",
    "\\x00",
    "\\xff",
    "\\xAb",
    "\\101",
    "\\0",
    "\\777",
    "\\400",
    "\\u1234",
    "\\U0001F389",
    "\\N",
    "\\q",
    "\\\n",
    "\\a",
    "\\v",
];

/// One string or bytes literal.
fn string_piece(r: &Rng, bytes: bool) -> String {
    let prefix = if bytes {
        r.pick(&["b", "B", "br", "bR", "Br", "BR", "rb", "rB", "Rb", "RB"])
    } else {
        r.pick(&["", "", "", "u", "U", "r", "R"])
    };
    let raw = prefix.contains(['r', 'R']);
    let quote = r.pick(&["'", "\"", "'''", "\"\"\""]);
    let triple = quote.len() == 3;
    let q = &quote[..1];
    let other = if q == "'" { "\"" } else { "'" };
    let mut body = String::new();
    for _ in 0..r.below(8) {
        let piece = match r.below(10) {
            0..=4 => r.pick(TEXT).to_string(),
            5 => other.to_string(),
            6 if triple => r.pick(&["\n", "\n", q]).to_string(),
            _ if raw => r
                .pick(&["\\d", "\\n", "\\\\", "\\'", "\\\"", "\\x", "\\\n", "\\N"])
                .to_string(),
            _ if bytes => r.pick(BYTES_ESCAPES).to_string(),
            _ => r.pick(STR_ESCAPES).to_string(),
        };
        if bytes && !piece.is_ascii() {
            continue;
        }
        if triple && piece == q && (body.ends_with(q) || body.is_empty()) {
            continue;
        }
        body.push_str(&piece);
    }
    // A triple-quoted body must not end with its quote character.
    if triple && body.ends_with(q) && !body.ends_with(&format!("\\{q}")) {
        body.push('x');
    }
    format!("{prefix}{quote}{body}{quote}")
}

/// Sometimes several pieces, implicitly concatenated.
fn string_literal(r: &Rng, bytes: bool, in_brackets: bool) -> String {
    let mut s = string_piece(r, bytes);
    while r.chance(20) {
        let sep = if in_brackets {
            r.pick(&[" ", "", "\n  ", " # c\n "])
        } else {
            r.pick(&[" ", "", " \\\n  "])
        };
        s.push_str(sep);
        s.push_str(&string_piece(r, bytes));
    }
    s
}

fn scalar(r: &Rng, in_brackets: bool) -> String {
    match r.below(12) {
        0..=3 => number(r),
        4..=7 => string_literal(r, false, in_brackets),
        8 => string_literal(r, true, in_brackets),
        9 => r.pick(&["True", "False", "None"]).into(),
        10 => "...".into(),
        _ => format!("({})", scalar(r, true)),
    }
}

/// Something hashable: a dict key or a set item.
fn hashable(r: &Rng, depth: usize) -> String {
    if depth > 0 && r.chance(15) {
        let n = r.below(3);
        let items: Vec<String> = (0..n).map(|_| hashable(r, depth - 1)).collect();
        return match n {
            0 => "()".into(),
            1 => format!("({},)", items[0]),
            _ => format!("({})", items.join(", ")),
        };
    }
    if r.chance(3) {
        // Unhashable: literal_eval raises TypeError.
        return r
            .pick(&["[]", "[1]", "{}", "set()", "(1, [])", "{1}"])
            .into();
    }
    scalar(r, true)
}

fn sep(r: &Rng) -> &'static str {
    r.pick(&[", ", ",", ", ", ",\n    ", " ,", ",  # note\n  ", ", \\\n "])
}

fn value(r: &Rng, depth: usize, in_brackets: bool) -> String {
    if depth == 0 || r.chance(45) {
        return scalar(r, in_brackets);
    }
    let n = r.below(4);
    let trailing = if n > 0 && r.chance(25) { "," } else { "" };
    let open_nl = if r.chance(20) { "\n  " } else { "" };
    match r.below(6) {
        0 => {
            let items: Vec<String> = (0..n).map(|_| value(r, depth - 1, true)).collect();
            format!("[{open_nl}{}{trailing}]", join(r, &items))
        }
        1 => {
            let items: Vec<String> = (0..n).map(|_| value(r, depth - 1, true)).collect();
            match n {
                0 => "()".into(),
                1 => format!("({open_nl}{},)", items[0]),
                _ => format!("({open_nl}{}{trailing})", join(r, &items)),
            }
        }
        2 => {
            let items: Vec<String> = (0..n)
                .map(|_| {
                    format!(
                        "{}{}:{}{}",
                        hashable(r, 2),
                        space(r),
                        r.pick(&[" ", "", "\n   "]),
                        value(r, depth - 1, true)
                    )
                })
                .collect();
            format!("{{{open_nl}{}{trailing}}}", join(r, &items))
        }
        3 if n > 0 => {
            let items: Vec<String> = (0..n).map(|_| hashable(r, 2)).collect();
            format!("{{{open_nl}{}{trailing}}}", join(r, &items))
        }
        4 => r.pick(&["set()", "set( )", "(set)()", "set(\n)"]).into(),
        _ => format!("({})", value(r, depth - 1, true)),
    }
}

fn join(r: &Rng, items: &[String]) -> String {
    let mut s = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push_str(sep(r));
        }
        s.push_str(item);
    }
    s
}

const NAMES: &[&str] = &[
    "PLUGIN_TYPE",
    "ENTRYPOINT",
    "LAUNCH",
    "SECRETS",
    "HOST",
    "RESTART",
    "A",
    "_x",
    "name2",
    "match",
    "type",
    "_",
    "__debug__",
    "print",
    "Ellipsis",
    "set",
];

fn statement(r: &Rng) -> String {
    let name = r.pick(NAMES);
    match r.below(12) {
        0 => string_literal(r, false, false),
        1 => format!("({name}) = {}", value(r, 3, false)),
        2 => {
            // A tuple without parentheses.
            let n = 1 + r.below(3);
            let items: Vec<String> = (0..n).map(|_| value(r, 2, false)).collect();
            let trailing = if n == 1 || r.chance(30) { "," } else { "" };
            format!("{name} = {}{trailing}", items.join(", "))
        }
        3 => format!(
            "{name}{}={}\\\n    {}",
            space(r),
            space(r),
            value(r, 3, false)
        ),
        _ => format!(
            "{name}{}={}{}",
            space(r),
            r.pick(&[" ", " ", "", "  "]),
            value(r, 1 + r.below(5), false)
        ),
    }
}

fn well_formed(r: &Rng) -> String {
    let mut s = String::new();
    if r.chance(5) {
        s.push('\u{feff}');
    }
    if r.chance(30) {
        s.push_str(r.pick(&[
            "\"\"\"\nAIGIS config for x\n\"\"\"\n",
            "'''Docstring.'''\n",
            "# AIGIS config\n",
            "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n",
            "# -*- coding: latin-1 -*-\n",
            "# vim: set fileencoding=utf8 :\n",
            "\n# coding=ascii\n",
            "# coding: iso-8859-1\n",
        ]));
    }
    for _ in 0..1 + r.below(5) {
        match r.below(10) {
            0 => s.push_str(r.pick(&[
                "\n",
                "   \n",
                "# comment\n",
                "  # indented comment\n",
                "\x0c\n",
                "\t\n",
            ])),
            1 => {
                s.push_str(&statement(r));
                s.push_str(r.pick(&["; ", ";", " ; "]));
                s.push_str(&statement(r));
                s.push_str(r.pick(&["\n", ";\n", "  # c\n"]));
            }
            _ => {
                s.push_str(&statement(r));
                s.push_str(r.pick(&["\n", "\n", "  # trailing\n", ";\n", "\n\n"]));
            }
        }
    }
    if r.chance(15) {
        s.pop();
    }
    match r.below(20) {
        0 => s.replace('\n', "\r\n"),
        1 => s.replace('\n', "\r"),
        _ => s,
    }
}

/// Statements at the edge of what Python or `literal_eval` accepts.
const TRICKY: &[&str] = &[
    "A = B = 1",
    "A, B = 1, 2",
    "A: int = 1",
    "A += 1",
    "42",
    "b'x'",
    "'a' 'b'",
    "('a')",
    "(('a' 'b'))",
    "('a',)",
    "f'x'",
    "A = f'x'",
    "A = rf'x'",
    "A = 'a' f'b'",
    "A = -True",
    "A = --1",
    "A = -(1)",
    "A = +(-1)",
    "A = (1)+(2j)",
    "A = 1j + 1",
    "A = 1 + 2",
    "A = 1 + 2j + 3j",
    "A = -1 - -2j",
    "A = 2j * 1",
    "A = 1 + 2j * 1",
    "A = (1 + 2j)",
    "A = -(1 + 2j)",
    "A = True + 1j",
    "A = 1e999 - 1e999j",
    "A = -0.0 - 0j",
    "A = -0j",
    "A = 0j",
    "A = -(0j)",
    "A = [x for x in y]",
    "A = {**a}",
    "A = [*a]",
    "A = *a,",
    "A = (a := 1)",
    "A = lambda: 1",
    "A = set([])",
    "A = set(*())",
    "A = frozenset()",
    "A = x",
    "A = 'a'.upper()",
    "A = [1][0]",
    "A = {'a': 1}['a']",
    "A = not True",
    "A = ~1",
    "A = 1 if 1 else 2",
    "A = 1 < 2",
    "A = (yield)",
    "if True:\n    A = 1",
    "  A = 1",
    "A = 1\n  B = 2",
    ";",
    "A = 1;;",
    "; A = 1",
    "A = 1;",
    "__debug__ = 1",
    "A = 1\\\n",
    "\\\nA = 1",
    "A = Ellipsis",
    "A = ...",
    "A = ....",
    "A = . . .",
    "A = {[]: 1}",
    "A = {(1, []): 1}",
    "A = {set()}",
    "A = {{}}",
    "A = {1: 2, 3}",
    "A = {1, 2: 3}",
    "A = {1, [2]}",
    "A = {(1, (2, [3])): 0}",
    "A = {1: [], 1.0: {}, True: set()}",
    "A = {1, 1.0, True}",
    "A = 0777",
    "A = 0o777",
    "A = 1__0",
    "A = 1_",
    "A = 0x_",
    "A = 0b12",
    "A = 0o8",
    "A = 1e",
    "A = 1.e5j",
    "A = 09.5",
    "A = 09",
    "A = 09j",
    "A = 00",
    "A = 1if 1 else 2",
    "A = 0x1for x in y",
    "A = 1else",
    "A = 'a' b'b'",
    "A = b'\u{e9}'",
    "A = b'\\xe9'",
    "A = '\\x4'",
    "A = '\\U00110000'",
    "A = '\\U0010ffff'",
    "A = '\\777'",
    "A = b'\\777'",
    "A = '\\N'",
    "A = (\n1)",
    "A = [1,\nB = 2]",
    "A = 1 # c \\",
    "A = 2 ** 3",
    "A = print",
    "A = None.x",
    "A = True()",
    "A = (1,)(2)",
    "A = ()",
    "A = (,)",
    "A = [,]",
    "A = {,}",
    "A = 1,,",
    "A = ,1",
    "A =",
    "= 1",
    "A",
    "A = 1 = 2",
    "A = 1 2",
    "(A) = 1",
    "((A)) = 2",
    "(A, B) = 1",
    "[A] = 1",
    "(A): int = 1",
    "A = -9223372036854775808",
    "A = 9223372036854775808",
    "A = -9223372036854775809",
    "A = 0x8000000000000000",
    "A = -0x8000000000000000",
    "A = 1_2_3j",
    "A = 0_0_0",
    "A = 1e1_0",
    "A = .5j",
    "A = 5.j",
    "A = 1E+5J",
    "A = 'a' 'b' 'c'",
    "A = u'a' U'b'",
    "A = r'\\'",
    "A = r'\\''",
    "A = '''a'''''",
    "A = ''''''",
    r#"A = """\""""""#,
    "A = (set)()",
    "A = ((set))()",
    "A = (set)",
    "A = set",
    "A = set()()",
    "A = set().x",
    "A = set ()",
    "A = -set()",
    "A = [1, 2, 3][1:]",
    "A = 1 .real",
    "A = 1.real",
    "A = 1..real",
    "A = 0x1.real",
    "A = 1_000.5e-3",
    "A = '\x01'",
    "A = 'a\\x00b'",
    "A = '\\0'",
    "# coding: latin-1\nA = '\u{e9}'",
    "# coding: ascii\nA = '\u{e9}'",
    "# coding: utf8\nA = '\u{e9}'",
    "\n# coding: latin-1\nA = '\u{e9}'",
    "A = 1\n# coding: latin-1\nB = '\u{e9}'",
    "# coding: bogus\nA = 1",
    "A = \tB",
    "\x0cA = 1",
    "A = 1\x0b",
    "A\t=\t1",
    "A = 1 \\\n  + 2j",
    "A = 1\r\n\r\n  \\\r\n",
    "A = 1\n\n  \\\n",
];

fn tricky_file(r: &Rng) -> String {
    let mut s = well_formed(r);
    let snippet = match r.below(20) {
        0 => format!("A = {}", "9".repeat(4300)),
        1 => format!("A = {}", "9".repeat(4301)),
        2 => format!("A = 0x{}", "f".repeat(3000)),
        3 => format!("A = {}1{}", "[".repeat(100), "]".repeat(100)),
        4 => format!("A = {}0{}", "(".repeat(100), ")".repeat(100)),
        _ => r.pick(TRICKY).to_string(),
    };
    if r.chance(50) || s.starts_with('\u{feff}') || s.ends_with(['\\', '\r']) {
        s.push('\n');
        s.push_str(&snippet);
        s.push('\n');
    } else {
        s = format!("{snippet}\n{s}");
    }
    s
}

// ---------------------------------------------------------------------------
// Mutations

const TOKENS: &[&str] = &[
    "(", ")", "[", "]", "{", "}", ",", ":", ";", "=", "+", "-", "*", ".", "\\", "#", "'", "\"",
    "\n", "x", "f", "b", "r", "j", "_", "0", "9", "e", " ", "\t", "...", "set()", "u", "\"\"\"",
    "\\\n", "\r", "1j", "0x", "\x0c", "==", "**", "~", "é", "\\x", "\\u",
];

fn mutate(r: &Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + r.below(3) {
        let at = r.below(chars.len() + 1);
        let token: Vec<char> = r.pick(TOKENS).chars().collect();
        match r.below(3) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 if at < chars.len() => {
                chars.splice(at..at + 1, token);
            }
            _ => {
                chars.splice(at..at, token);
            }
        }
    }
    chars.into_iter().collect()
}

// ---------------------------------------------------------------------------
// Our result, written for the Python referee

fn float_repr(f: f64) -> String {
    assert!(!f.is_nan(), "NaN cannot come from a literal");
    if f.is_infinite() {
        return if f > 0.0 {
            "1e999".into()
        } else {
            "-1e999".into()
        };
    }
    format!("{f:?}")
}

/// `v` as a Python literal expression that `ast.literal_eval` reads back.
fn to_python_repr(v: &Value) -> String {
    match v {
        Value::Str(s) => {
            let mut out = String::from("'");
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    ' '..='~' => out.push(c),
                    _ => {
                        let _ = write!(out, "\\U{:08x}", c as u32);
                    }
                }
            }
            out.push('\'');
            out
        }
        Value::Bytes(b) => {
            let mut out = String::from("b'");
            for byte in b {
                let _ = write!(out, "\\x{byte:02x}");
            }
            out.push('\'');
            out
        }
        Value::Int(i) => i.to_string(),
        Value::BigInt(s) => s.clone(),
        Value::Float(f) => float_repr(*f),
        Value::Complex { re, im } => {
            // literal_eval builds complex(re, 0.0) +/- complex(0.0, |im|):
            // `re - |im|j` keeps re (even -0.0) and gives im = 0.0 - |im|.
            if *im == 0.0 && im.is_sign_negative() {
                // Only `-0j` (or `-(0j)`) makes (-0.0, -0.0).
                "(-0j)".into()
            } else if im.is_sign_negative() || (*re == 0.0 && re.is_sign_negative()) {
                format!("({} - {}j)", float_repr(*re), float_repr(im.abs()))
            } else {
                format!("({} + {}j)", float_repr(*re), float_repr(*im))
            }
        }
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::None => "None".into(),
        Value::Ellipsis => "...".into(),
        Value::List(items) => format!("[{}]", items_repr(items.iter().map(|i| &i.value))),
        Value::Tuple(items) => match items.len() {
            1 => format!("({},)", to_python_repr(&items[0].value)),
            _ => format!("({})", items_repr(items.iter().map(|i| &i.value))),
        },
        Value::Set(items) if items.is_empty() => "set()".into(),
        Value::Set(items) => format!("{{{}}}", items_repr(items.iter().map(|i| &i.value))),
        Value::Dict(pairs) => {
            let parts: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", to_python_repr(&k.value), to_python_repr(&v.value)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

fn items_repr<'a>(items: impl Iterator<Item = &'a Value>) -> String {
    items.map(to_python_repr).collect::<Vec<_>>().join(", ")
}

fn ours(text: &str) -> String {
    match pylit::parse(text) {
        Ok(assignments) => {
            let mut out = String::from("OK\n");
            for a in assignments {
                let _ = writeln!(out, "{}\t{}", a.name, to_python_repr(&a.value.value));
            }
            out
        }
        Err(e) => format!("ERR {e}").replace('\n', " "),
    }
}

// ---------------------------------------------------------------------------

fn summary_field(line: &str, field: &str) -> usize {
    let key = format!("\"{field}\": ");
    line.split(&key)
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn pylit_agrees_with_python_literal_eval() {
    let python = match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => "python3",
        _ => {
            println!("SKIPPED: python3 is not installed; the differential test needs it");
            return;
        }
    };
    // For exploring locally: AIGIS_DIFF_FILES=100000 AIGIS_DIFF_SEED=7.
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let count = env("AIGIS_DIFF_FILES").map_or(FILES, |n| n as usize);
    let seed = env("AIGIS_DIFF_SEED").unwrap_or(0x9e37_79b9_7f4a_7c15);
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Rng::new(seed);
    let mut files = Vec::with_capacity(count);
    for i in 0..count {
        let good = if i % 5 == 2 {
            tricky_file(&r)
        } else {
            well_formed(&r)
        };
        let text = if i % 2 == 0 { good } else { mutate(&r, &good) };
        std::fs::write(dir.path().join(format!("{i}.py")), &text).expect("write");
        std::fs::write(dir.path().join(format!("{i}.ours")), ours(&text)).expect("write");
        files.push(text);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/literal_eval_differential.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(dir.path())
        .arg(count.to_string())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed:\n{}\n{stdout}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.pop().unwrap_or_default();
    println!("{summary}");
    if !lines.is_empty() {
        let mut report = format!(
            "{} disagreements with Python; the first ones:\n",
            lines.len()
        );
        for line in lines.iter().take(10) {
            let i = summary_field(line, "file");
            let _ = writeln!(report, "\n--- file {i}:\n{:?}\n{line}", files[i]);
        }
        panic!("{report}");
    }
    // The mix must exercise both sides.
    let accepted = summary_field(summary, "both_accept");
    let refused = summary_field(summary, "both_refuse");
    assert!(accepted > count / 5, "too few accepted files: {summary}");
    assert!(refused > count / 5, "too few refused files: {summary}");
}
