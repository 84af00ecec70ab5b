//! MT19937-64 and oxen's `uniform_distribution_portable`: the randomness of swarm assignment.
//!
//! Owns the exact generator C++'s `std::mt19937_64` is (Matsumoto & Nishimura's 64-bit
//! Mersenne Twister, default seed 5489), because oxend seeds it from the block hash and swarm
//! assignment must be a deterministic function of the directory's state. `rand`'s generators
//! are not specified to be stable across versions, so they must not be used here.
//! Pure: no I/O, no clock, no global state.

/// State words.
const NN: usize = 312;
/// Middle word offset.
const MM: usize = 156;
/// Twist matrix constant.
const MATRIX_A: u64 = 0xB502_6F5A_A966_19E9;
/// Most significant 33 bits.
const UPPER_MASK: u64 = 0xFFFF_FFFF_8000_0000;
/// Least significant 31 bits.
const LOWER_MASK: u64 = 0x7FFF_FFFF;

/// `std::mt19937_64`.
#[derive(Clone)]
pub struct Mt19937_64 {
    state: [u64; NN],
    index: usize,
}

impl std::fmt::Debug for Mt19937_64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937_64")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Mt19937_64 {
    /// The seed `std::mt19937_64` uses when default-constructed.
    pub const DEFAULT_SEED: u64 = 5489;

    /// A generator seeded like `std::mt19937_64(seed)`.
    pub fn new(seed: u64) -> Self {
        let mut state = [0u64; NN];
        state[0] = seed;
        for i in 1..NN {
            let prev = state[i - 1];
            state[i] = 6_364_136_223_846_793_005u64
                .wrapping_mul(prev ^ (prev >> 62))
                .wrapping_add(i as u64);
        }
        Self { state, index: NN }
    }

    /// oxend's seed from a block hash: the first 8 bytes read little-endian (a `memcpy` into a
    /// `uint64_t` on the little-endian machines oxend runs on).
    pub fn from_block_hash(hash: &[u8; 32]) -> Self {
        Self::new(Self::seed_of(hash))
    }

    /// The seed `from_block_hash` uses: the hash's first 8 bytes as a little-endian u64.
    pub fn seed_of(hash: &[u8; 32]) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&hash[..8]);
        u64::from_le_bytes(b)
    }

    /// Regenerates all `NN` words at once ("twist").
    fn twist(&mut self) {
        for i in 0..NN {
            let x = (self.state[i] & UPPER_MASK) | (self.state[(i + 1) % NN] & LOWER_MASK);
            let mut xa = x >> 1;
            if x & 1 != 0 {
                xa ^= MATRIX_A;
            }
            self.state[i] = self.state[(i + MM) % NN] ^ xa;
        }
        self.index = 0;
    }

    /// The next 64-bit output, as `operator()` of `std::mt19937_64`.
    pub fn next_u64(&mut self) -> u64 {
        if self.index >= NN {
            self.twist();
        }
        let mut x = self.state[self.index];
        self.index += 1;
        x ^= (x >> 29) & 0x5555_5555_5555_5555;
        x ^= (x << 17) & 0x71D6_7FFF_EDA6_0000;
        x ^= (x << 37) & 0xFFF7_EEE0_0000_0000;
        x ^= x >> 43;
        x
    }

    /// oxen's `uniform_distribution_portable(mt, n)`: a uniform value in `[0, n)` by rejection,
    /// the same on every platform (unlike `std::uniform_int_distribution`). Draws are rejected
    /// while `x >= max - max % n`; the result is `x / ((max - max % n) / n)`.
    /// `n == 0` has no valid answer; it returns 0 without drawing (callers never pass it).
    pub fn uniform(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let secure_max = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < secure_max {
                return x / (secure_max / n);
            }
        }
    }

    /// `uniform` for an index into a slice of `len` elements.
    pub fn index(&mut self, len: usize) -> usize {
        // len fits in u64 and the result is < len, so both conversions are lossless.
        self.uniform(len as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_outputs_for_default_seed() {
        // The reference implementation's (mt19937-64.c, init_genrand64(5489)) first outputs.
        let mut mt = Mt19937_64::new(Mt19937_64::DEFAULT_SEED);
        assert_eq!(mt.next_u64(), 14514284786278117030);
        assert_eq!(mt.next_u64(), 4620546740167642908);
        assert_eq!(mt.next_u64(), 13109570281517897720);
    }

    #[test]
    fn ten_thousandth_output() {
        // The C++ standard ([rand.predef]) requires the 10000th consecutive invocation of a
        // default-constructed mt19937_64 to produce 9981545732273789042.
        let mut mt = Mt19937_64::new(Mt19937_64::DEFAULT_SEED);
        let mut last = 0;
        for _ in 0..10_000 {
            last = mt.next_u64();
        }
        assert_eq!(last, 9981545732273789042);
    }

    #[test]
    fn block_hash_seed_is_little_endian() {
        let mut hash = [0xeeu8; 32];
        hash[..8].copy_from_slice(&5489u64.to_le_bytes());
        let mut a = Mt19937_64::from_block_hash(&hash);
        assert_eq!(a.next_u64(), 14514284786278117030);
    }

    #[test]
    fn uniform_stays_in_range_and_is_deterministic() {
        let mut a = Mt19937_64::new(42);
        let mut b = Mt19937_64::new(42);
        for n in 1..200u64 {
            let x = a.uniform(n);
            assert!(x < n);
            assert_eq!(x, b.uniform(n));
        }
        assert_eq!(a.uniform(1), 0);
        assert_eq!(a.uniform(0), 0);
        // oxen's formula, not `x % n` nor `x >> 32`: max - max % 2^32 = 2^64 - 2^32, and the
        // divisor is that over n = 2^32 - 1 (the first draw is below the bound, so accepted).
        let mut c = Mt19937_64::new(Mt19937_64::DEFAULT_SEED);
        assert_eq!(c.uniform(1 << 32), 14514284786278117030 / 4_294_967_295);
    }

    #[test]
    fn uniform_covers_small_ranges() {
        let mut mt = Mt19937_64::new(7);
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            seen[mt.index(7)] += 1;
        }
        // Each bucket expects 1000; a fair generator is nowhere near these bounds.
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }
}
