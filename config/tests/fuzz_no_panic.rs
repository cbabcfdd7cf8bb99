//! Bounded, deterministic fuzzing: random bytes, token soup, mutated real
//! configs, very deep nesting and huge inputs go through `pylit::parse`,
//! `parse_plugin` and `parse_central`. None may panic or overflow the stack;
//! errors are fine.

mod common;
use common::Rng;

use config::{parse_central, parse_plugin, pylit, PluginEntry, PluginKind, Source};
use std::path::Path;
use std::time::{Duration, Instant};

/// Small cases; the large ones are few and fixed.
const SMALL_CASES: usize = 12_000;

/// The small cases stop early past this, so a slow machine still finishes.
const BUDGET: Duration = Duration::from_millis(1500);

const PLUGIN: &str = "\"\"\"Docstring.\"\"\"\nPLUGIN_TYPE = 'external'\nENTRYPOINT = \"{root}\"\n\
    LAUNCH = ['python3', r'main.py', u'--x']\nSYSTEM_REQUIREMENTS = ('git',)\n\
    SECRETS = {'a.key': '{root}/a', b'k': 1}\nRESTART = -0x1_f\nHOST = None; COLOR = 1+2j\n\
    X = {1, 2.5e-3, ..., (True, None)}; Y = set()\n";

const CENTRAL: &str = "# central\n[aigis]\nhome = \"state\"\nlog_max_bytes = 1_000\nagents = { \"aarch64-linux\" = \"/a\" }\nuser = \"aigis\"\nusers = { web = \"aigis-web\" }\n\
    [core]\ndb = \"git@h:u/db.git#main\"\n[external]\nweb = 'plugins/web'\n\"q\" = \"\"\"x\"\"\"\n";

const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ";",
    "=",
    "==",
    "+",
    "-",
    "*",
    "**",
    ".",
    "...",
    "\\",
    "\\\n",
    "#",
    "'",
    "\"",
    "'''",
    "\"\"\"",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "\x0c",
    "A",
    "set",
    "True",
    "None",
    "import",
    "f",
    "b",
    "r",
    "u",
    "rb",
    "x",
    "1",
    "0x",
    "0o7",
    "0b",
    "1e",
    "1j",
    "_",
    "1_0",
    ".5",
    "é",
    "\u{feff}",
    "\0",
    "\\x",
    "\\u",
    "\\N{",
    "\\U0010ffff",
    "[core]",
    "[[a]]",
    "a.b",
    "= \"",
    "'''\n",
    "true",
    "1979-05-27",
    "inf",
    "nan",
    "-0",
    "0777",
    "999999999999999999999999999999",
];

fn token_soup(r: &Rng) -> String {
    (0..r.below(60)).map(|_| r.pick(TOKENS)).collect()
}

fn random_bytes(r: &Rng) -> String {
    let bytes: Vec<u8> = (0..r.below(120)).map(|_| r.next() as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn mutated(r: &Rng, base: &str) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for _ in 0..1 + r.below(6) {
        let at = r.below(chars.len() + 1);
        match r.below(3) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => chars.splice(at..at, r.pick(TOKENS).chars()).for_each(drop),
            _ => {
                // Duplicate a slice: repeats brackets, strings, lines.
                let end = (at + r.below(20)).min(chars.len());
                let piece: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, piece).for_each(drop);
            }
        }
    }
    chars.into_iter().collect()
}

fn deep(r: &Rng) -> String {
    let opens = ["[", "(", "{", "{1:", "-(", "[(", "{a=", "a.", "{'k': ["];
    let mut s = String::from(r.pick(&["A = ", "[core]\nx = ", "", "(", "A = 1, "]));
    let n = 1_000 + r.below(30_000);
    for _ in 0..n {
        s.push_str(r.pick(&opens));
        if r.below(50) == 0 {
            s.push_str(r.pick(&["1", ",", "]", ")", "}", "\n", "'x'"]));
        }
    }
    s
}

/// Each about 128 KiB: a hundred times a large real config.
fn huge_inputs() -> Vec<String> {
    let size = 1 << 17;
    vec![
        format!("A = '{}'\n", "x".repeat(size)),
        format!("A = \"\"\"{}\"\"\"\n", "line\n".repeat(size / 5)),
        format!("# {}\nA = 1\n", "c".repeat(size)),
        format!("A = {}\n", "9".repeat(size)),
        format!("A = 0x{}\n", "f".repeat(size)),
        format!("A = 1.{}e5\n", "5".repeat(size)),
        format!("A = [{}]\n", "1, ".repeat(size / 3)),
        format!("A = {{{}}}\n", "'k': 1, ".repeat(size / 8)),
        format!("A = {{{}}}\n", "(1, 'a'), ".repeat(size / 10)),
        format!("A = {}\n", "'s' ".repeat(size / 4)),
        "A = 1\n".repeat(size / 6),
        "\\\n".repeat(size / 2),
        "\n".repeat(size),
        ";".repeat(size),
        "(".repeat(size),
        "[".repeat(size),
        format!("A = {}", "-(".repeat(size / 2)),
        format!("A = {}1{}", "[".repeat(size / 2), "]".repeat(size / 2)),
        format!("[core]\nx = {}\n", "[".repeat(size)),
        format!("[core]\nx = {}\n", "{a=".repeat(size / 3)),
        format!("[core{}]\n", ".a".repeat(size / 2)),
        format!("[core]\n{}", "x = \"a\"\n".repeat(size / 8)),
        format!("[core]\nx = \"{}\"\n", "\\u00e9".repeat(size / 6)),
    ]
}

fn entry() -> PluginEntry {
    PluginEntry {
        name: "p".into(),
        section: PluginKind::External,
        source: Source::LocalDir("/src".into()),
        line: 1,
    }
}

fn feed(text: &str) {
    let _ = pylit::parse(text);
    let _ = parse_plugin(
        &entry(),
        Path::new("/r"),
        Path::new("/r/AIGIS/AIGIS.config"),
        text,
    );
    let _ = parse_central(text, Path::new("/etc/aigis/aigis.toml"));
}

#[test]
fn nothing_panics_or_overflows() {
    let started = Instant::now();
    let r = Rng::new(0x5eed_1234_abcd_ef01);
    let mut fed = 0;
    for i in 0..SMALL_CASES {
        if started.elapsed() > BUDGET {
            break;
        }
        let text = match i % 5 {
            0 => random_bytes(&r),
            1 => token_soup(&r),
            2 => mutated(&r, PLUGIN),
            3 => mutated(&r, CENTRAL),
            _ if i % 50 == 4 => deep(&r),
            _ => mutated(&r, &token_soup(&r)),
        };
        feed(&text);
        fed += 1;
    }
    // The huge inputs always run: they are the point.
    let huge = huge_inputs();
    for text in &huge {
        let _ = pylit::parse(text);
        let _ = parse_central(text, Path::new("/etc/aigis/aigis.toml"));
    }
    println!(
        "fed {fed} small and {} huge inputs in {:?}",
        huge.len(),
        started.elapsed()
    );
    assert!(fed >= 1_000, "only {fed} cases within the budget");
}
