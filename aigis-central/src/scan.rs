//! The fast path of `proxy.scan` (`python/proxy.py`) for what most calls
//! carry: plain data (numbers, ASCII strings, bytes, tuples, lists, dicts,
//! sets, `None`, booleans, and references to them).
//!
//! `plain_cost` walks a pickle's opcodes as the Python scan does and
//! answers what that scan would charge the call's budget, or `None` as soon
//! as it meets anything else: a global, a call, a non-ASCII string, or
//! anything the Python scan would refuse. `scan` then reads that pickle
//! itself, and says why it refuses it. So this file holds no rule of its
//! own: accepting here means the Python scan accepts with the same cost,
//! which `tests::agrees_with_the_python_scan` checks against the machine's
//! `python3` on thousands of pickles, whole and damaged.
//!
//! On plain data the stack's items need no facts (those matter only for a
//! global's call), so the stack is its depth, and the memo which indices
//! were stored. The Python scan took 14.5 µs of the 23 µs `proxy.serve`
//! spent on a 64-byte call (timeit); this walk is a loop over its bytes.

/// The Python scan's limits, read from `proxy.py` when central starts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub opcodes: u64,
    pub marks: usize,
    pub memo: usize,
    pub long_bytes: u64,
    /// The highest pickle protocol read.
    pub protocol: u8,
}

/// What `proxy.scan` would charge for `data` with `limit` bytes left in the
/// budget, or `None` when the Python scan must decide.
pub fn plain_cost(data: &[u8], limit: u64, limits: &Limits) -> Option<u64> {
    let mut walk = Walk {
        data,
        pos: 0,
        depth: 0,
        marks: Vec::new(),
        memo: Vec::new(),
        stored: 0,
        // The C unpickler copies each frame it reads.
        cost: data.len() as u64,
        limits,
    };
    let mut ops = 0u64;
    loop {
        let code = walk.byte()?;
        ops += 1;
        if ops > limits.opcodes || walk.cost > limit {
            return None;
        }
        if code == 0x2e {
            // STOP: something to return, and nothing after it.
            walk.need(1)?;
            if walk.pos != data.len() {
                return None;
            }
            break;
        }
        walk.op(code)?;
    }
    (walk.cost <= limit).then_some(walk.cost)
}

struct Walk<'a> {
    data: &'a [u8],
    pos: usize,
    /// Items on the stack.
    depth: usize,
    /// The depth at each open MARK.
    marks: Vec<usize>,
    /// Which memo indices hold a value.
    memo: Vec<bool>,
    /// How many do (the next MEMOIZE index).
    stored: usize,
    cost: u64,
    limits: &'a Limits,
}

impl Walk<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A length of `width` bytes (1, 4 or 8, little-endian, unsigned).
    fn size(&mut self, width: usize) -> Option<u64> {
        Some(match width {
            1 => u64::from(self.byte()?),
            4 => u64::from(u32::from_le_bytes(self.le()?)),
            _ => u64::from_le_bytes(self.le()?),
        })
    }

    /// Skips `size` bytes of data that follow an opcode.
    fn body(&mut self, size: u64) -> Option<&[u8]> {
        self.take(usize::try_from(size).ok()?)
    }

    /// At least `k` items above the innermost MARK.
    fn need(&self, k: usize) -> Option<()> {
        let floor = self.marks.last().copied().unwrap_or(0);
        (self.depth.checked_sub(floor)? >= k).then_some(())
    }

    fn push(&mut self, cost: u64) {
        self.depth += 1;
        self.cost += cost;
    }

    /// Ends the innermost MARK; how many items were above it.
    fn pop_mark(&mut self) -> Option<u64> {
        let at = self.marks.pop()?;
        let items = self.depth.checked_sub(at)?;
        self.depth = at;
        Some(items as u64)
    }

    fn memo_put(&mut self, index: usize) -> Option<()> {
        self.need(1)?;
        if index >= self.memo.len() {
            if index > self.stored + self.limits.memo {
                return None;
            }
            // The C unpickler's table: 8 bytes an index, doubled when it grows.
            self.cost += 16 * (index + 1 - self.memo.len()) as u64;
            self.memo.resize(index + 1, false);
        }
        if !self.memo[index] {
            self.stored += 1;
            self.memo[index] = true;
        }
        Some(())
    }

    fn memo_get(&mut self, index: usize) -> Option<()> {
        if !*self.memo.get(index)? {
            return None;
        }
        self.push(8);
        Some(())
    }

    /// One opcode other than STOP; `None` when the Python scan must decide.
    fn op(&mut self, code: u8) -> Option<()> {
        match code {
            0x4b => {
                // BININT1
                self.byte()?;
                self.push(8);
            }
            0x4a | 0x4d => {
                // BININT, BININT2: small ints are cached
                let value = if code == 0x4a {
                    i64::from(i32::from_le_bytes(self.le()?))
                } else {
                    i64::from(u16::from_le_bytes(self.le()?))
                };
                self.push(if (-5..=256).contains(&value) { 8 } else { 40 });
            }
            0x8a | 0x8b => {
                // LONG1, LONG4
                let size = if code == 0x8a {
                    i64::from(self.byte()?)
                } else {
                    i64::from(i32::from_le_bytes(self.le()?))
                };
                let size = u64::try_from(size).ok()?;
                if size > self.limits.long_bytes {
                    return None;
                }
                self.body(size)?;
                self.push(40 + size);
            }
            0x47 => {
                // BINFLOAT
                self.take(8)?;
                self.push(32);
            }
            0x8c | 0x58 | 0x8d => {
                // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8: ASCII only here
                let size = self.size(match code {
                    0x8c => 1,
                    0x58 => 4,
                    _ => 8,
                })?;
                if !self.body(size)?.is_ascii() {
                    return None;
                }
                self.push(64 + size);
            }
            0x43 | 0x42 | 0x8e | 0x96 => {
                // SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
                let size = self.size(match code {
                    0x43 => 1,
                    0x42 => 4,
                    _ => 8,
                })?;
                self.body(size)?;
                self.push(80 + size);
            }
            0x4e | 0x88 | 0x89 | 0x29 => self.push(8), // NONE, NEWTRUE, NEWFALSE, EMPTY_TUPLE
            0x5d => self.push(80),                     // EMPTY_LIST
            0x7d => self.push(88),                     // EMPTY_DICT
            0x8f => self.push(240),                    // EMPTY_SET
            0x85..=0x87 => {
                // TUPLE1, TUPLE2, TUPLE3
                let k = usize::from(code - 0x84);
                self.need(k)?;
                self.depth -= k;
                self.push(64 + 8 * k as u64);
            }
            0x28 => {
                // MARK
                self.marks.push(self.depth);
                if self.marks.len() > self.limits.marks {
                    return None;
                }
                self.cost += 16;
            }
            0x74 => {
                // TUPLE
                let items = self.pop_mark()?;
                self.push(64 + 8 * items);
            }
            0x6c => {
                // LIST
                let items = self.pop_mark()?;
                self.push(80 + 16 * items);
            }
            0x64 => {
                // DICT
                let items = self.pop_mark()?;
                self.push(88 + 64 * (items / 2 + 1));
            }
            0x91 => {
                // FROZENSET
                let items = self.pop_mark()?;
                self.push(240 + 64 * items);
            }
            0x65 | 0x75 | 0x90 => {
                // APPENDS, SETITEMS, ADDITEMS: into the item below the MARK
                let items = self.pop_mark()?;
                self.need(1)?;
                self.cost += match code {
                    0x65 => 16 * items,
                    0x75 => 64 * (items / 2 + 1),
                    _ => 64 * items,
                };
            }
            0x61 => {
                // APPEND
                self.need(2)?;
                self.depth -= 1;
                self.cost += 16;
            }
            0x73 => {
                // SETITEM
                self.need(3)?;
                self.depth -= 2;
                self.cost += 64;
            }
            0x94 => self.memo_put(self.stored)?, // MEMOIZE
            0x71 => {
                // BINPUT
                let index = usize::from(self.byte()?);
                self.memo_put(index)?;
            }
            0x72 => {
                // LONG_BINPUT
                let index = u32::from_le_bytes(self.le()?) as usize;
                self.memo_put(index)?;
            }
            0x68 => {
                // BINGET
                let index = usize::from(self.byte()?);
                self.memo_get(index)?;
            }
            0x6a => {
                // LONG_BINGET
                let index = u32::from_le_bytes(self.le()?) as usize;
                self.memo_get(index)?;
            }
            0x30 => {
                // POP: an empty MARK, or an item
                if self.marks.last() == Some(&self.depth) {
                    self.marks.pop();
                } else {
                    self.need(1)?;
                    self.depth -= 1;
                }
            }
            0x31 => {
                // POP_MARK
                self.pop_mark()?;
            }
            0x32 => {
                // DUP
                self.need(1)?;
                self.push(8);
            }
            0x80 => {
                // PROTO
                if self.byte()? > self.limits.protocol {
                    return None;
                }
            }
            0x95 => {
                // FRAME: its length must be there
                let size = self.size(8)?;
                if size > (self.data.len() - self.pos) as u64 {
                    return None;
                }
            }
            _ => return None,
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        opcodes: 2_000_000,
        marks: 1000,
        memo: 100_000,
        long_bytes: 4096,
        protocol: 5,
    };

    /// The Python side of the differential test: random plain values (and
    /// some that are not), pickled with every protocol plugins may use,
    /// then cut short, flipped and spliced; for each, what the Python scan
    /// says with a full budget and with one byte too few.
    const CASES: &str = r#"
import json, pickle, pickletools, random, sys
sys.path.insert(0, sys.argv[1])
import proxy

rng = random.Random(int(sys.argv[2]))

def value(depth=0):
    kinds = ["int", "bigint", "float", "str", "longstr", "bytes", "longbytes",
             "none", "bool", "text"]
    if depth < 4:
        kinds += ["tuple", "list", "dict", "set", "frozenset", "shared"] * 2
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, -5, -6, 255, 256, 257, 65535, 65536, -2**31, 2**31 - 1])
    if kind == "bigint":
        return rng.randrange(-2**200, 2**200)
    if kind == "float":
        return rng.random() * 1e6
    if kind == "str":
        return "".join(rng.choice("abc.xyz_") for _ in range(rng.randrange(0, 70)))
    if kind == "longstr":
        return "s" * rng.choice([rng.randrange(250, 2000), rng.randrange(65000, 70000)])
    if kind == "text":
        return rng.choice(["é", "ünï", "日本", "\udc80"])
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
    if kind == "longbytes":
        return b"b" * rng.choice([rng.randrange(250, 2000), rng.randrange(65000, 70000)])
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    items = [value(depth + 1) for _ in range(rng.randrange(0, 6))]
    if kind == "tuple":
        return tuple(items)
    if kind == "list":
        return items
    if kind == "dict":
        return {("k%d" % i): v for i, v in enumerate(items)}
    if kind in ("set", "frozenset"):
        flat = [i for i in items if isinstance(i, (int, str, bytes))]
        return set(flat) if kind == "set" else frozenset(flat)
    shared = value(depth + 1)
    return [shared, (shared, shared), {"a": shared}]

PLAIN = set("""BININT1 BININT BININT2 LONG1 LONG4 BINFLOAT SHORT_BINUNICODE BINUNICODE
BINUNICODE8 SHORT_BINBYTES BINBYTES BINBYTES8 BYTEARRAY8 NONE NEWTRUE NEWFALSE EMPTY_TUPLE
EMPTY_LIST EMPTY_DICT EMPTY_SET TUPLE1 TUPLE2 TUPLE3 MARK TUPLE LIST DICT FROZENSET APPENDS
SETITEMS ADDITEMS APPEND SETITEM MEMOIZE BINPUT LONG_BINPUT BINGET LONG_BINGET POP POP_MARK
DUP PROTO FRAME STOP""".split())

def plain(data):
    """Only plain opcodes and ASCII text: what the fast path must take."""
    for op, arg, _ in pickletools.genops(data):
        if op.name not in PLAIN or (isinstance(arg, str) and not arg.isascii()):
            return False
    return True

def verdict(data, budget):
    try:
        proxy.scan(data, budget)
        return budget.spent
    except pickle.UnpicklingError:
        return None

for _ in range(int(sys.argv[3])):
    v = ("echo.ping", (value(),), {})
    whole = pickle.dumps(v, protocol=rng.choice([2, 3, 4, 5]))
    cases = [whole]
    for _ in range(3):
        b = bytearray(whole)
        how = rng.randrange(3)
        at = rng.randrange(len(b))
        if how == 0:
            del b[at:]
        elif how == 1:
            b[at] = rng.randrange(256)
        else:
            b[at:at] = bytes([rng.choice(b"(0tle\x94\x85\x86\x87ud.\x8c")])
        cases.append(bytes(b))
    for data in cases:
        cost = verdict(data, proxy.Budget(len(data)))
        print(json.dumps({"data": data.hex(), "limit": proxy.Budget(len(data)).limit,
                          "cost": cost, "plain": data is whole and plain(data)}))
        if cost is not None:  # one byte short of what it costs
            short = proxy.Budget(len(data))
            short.limit = cost - 1
            print(json.dumps({"data": data.hex(), "limit": cost - 1,
                              "cost": verdict(data, short), "plain": False}))
"#;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Accepting here means the Python scan accepts with the same cost;
    /// and plain pickles as `pickle.dumps` writes them are taken here.
    #[test]
    fn agrees_with_the_python_scan() {
        let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../python");
        let out = std::process::Command::new("python3")
            .args(["-c", CASES])
            .arg(&python)
            .args(["7", "1500"])
            .output()
            .expect("python3 is needed for the tests");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (mut cases, mut fast, mut plain_wholes, mut plain_fast) = (0, 0, 0, 0);
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let data = unhex(case["data"].as_str().unwrap());
            let limit = case["limit"].as_u64().unwrap();
            let python = case["cost"].as_u64();
            let ours = plain_cost(&data, limit, &LIMITS);
            cases += 1;
            if let Some(cost) = ours {
                fast += 1;
                let hex = case["data"].as_str().unwrap();
                assert_eq!(
                    Some(cost),
                    python,
                    "accepted here, not so in Python (limit {limit}): {} bytes, {}...",
                    data.len(),
                    &hex[..hex.len().min(200)]
                );
            }
            // What the fast path must take: a whole pickle Python accepts,
            // of plain opcodes and ASCII text only.
            if case["plain"].as_bool().unwrap() && python.is_some() {
                plain_wholes += 1;
                plain_fast += usize::from(ours.is_some());
            }
        }
        assert!(cases > 6000, "{cases} cases");
        assert!(plain_wholes > 300, "{plain_wholes} plain pickles");
        assert_eq!(plain_fast, plain_wholes, "plain pickles left to Python");
        assert!(fast > 500, "{fast} taken by the fast path");
    }

    #[test]
    fn a_call_of_plain_data_is_read_here() {
        // pickle.dumps(("echo.ping", (b"x" * 64,), {}), protocol=4)
        let mut data = vec![0x80, 4, 0x95];
        let body_len = 86u64;
        data.extend_from_slice(&body_len.to_le_bytes());
        data.extend_from_slice(&[0x8c, 9]);
        data.extend_from_slice(b"echo.ping");
        data.extend_from_slice(&[0x94, 0x43, 64]);
        data.extend_from_slice(&[b'x'; 64]);
        data.extend_from_slice(&[0x94, 0x85, 0x94, 0x7d, 0x94, 0x87, 0x94, 0x2e]);
        // 97 bytes, 5 memo slots, a 9-char string, 64 bytes, a 1-tuple,
        // a dict and a 3-tuple.
        let cost = 97 + 5 * 16 + (64 + 9) + (80 + 64) + (64 + 8) + 88 + (64 + 24);
        assert_eq!(plain_cost(&data, 1 << 30, &LIMITS), Some(cost));
        assert_eq!(plain_cost(&data, cost - 1, &LIMITS), None);
        // A global anywhere: the Python scan decides.
        let mut global = data.clone();
        global[12] = 0x93;
        assert_eq!(plain_cost(&global, 1 << 30, &LIMITS), None);
        // Cut short: the Python scan says why.
        assert_eq!(plain_cost(&data[..50], 1 << 30, &LIMITS), None);
    }
}
