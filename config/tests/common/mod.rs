//! What the generated-input tests share: one small deterministic RNG.

// Each test file uses what it needs of this module.
#![allow(dead_code)]

use std::cell::Cell;

/// xorshift64*: small, deterministic, good enough to pick things.
pub struct Rng(pub Cell<u64>);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(Cell::new(seed.max(1)))
    }

    pub fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T: ?Sized>(&self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}
