//! Backoff jitter shared by the HubSpot and Salesforce clients: a xorshift sequence from a fixed
//! seed, so retry waits are reproducible in tests and need no cryptographic quality.

use std::sync::atomic::{AtomicU64, Ordering};

/// A sequence of numbers in [0, 1).
#[derive(Debug)]
pub struct Jitter(AtomicU64);

impl Default for Jitter {
    fn default() -> Self {
        Jitter(AtomicU64::new(0x9e37_79b9_7f4a_7c15))
    }
}

impl Jitter {
    /// The next number in [0, 1).
    pub fn next(&self) -> f64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
