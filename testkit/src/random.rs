//! Deterministic randomness without a dependency, for tests that cut logs at random places:
//! the same seed gives the same cuts, so a failure is reproducible.

/// xorshift64*.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// `bytes` in chunks of 1 to `max_chunk` bytes: cut inside lines, escapes, `\r\n` and
/// multi-byte characters, as reads of a growing log are.
pub fn chunks<'a>(bytes: &'a [u8], rng: &mut Rng, max_chunk: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at((1 + rng.below(max_chunk)).min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_order_within_the_bound() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut rng = Rng(7);
        let cut = chunks(&bytes, &mut rng, 10);
        assert!(cut.len() >= 26);
        assert!(cut.iter().all(|c| (1..=10).contains(&c.len())));
        assert_eq!(cut.concat(), bytes);
    }
}
