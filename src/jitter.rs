//! Backoff jitter shared by the HubSpot and Salesforce clients: a xorshift sequence, no
//! cryptographic quality needed. In production each client draws its own seed from the OS's
//! per-process hash keys, the process id and the clock, so replicas started together do not
//! retry in lockstep; tests that need reproducible waits inject a seed with [`Jitter::seeded`].

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A sequence of numbers in [0, 1).
#[derive(Debug)]
pub struct Jitter(AtomicU64);

impl Default for Jitter {
    /// A sequence seeded afresh (see the module docs).
    fn default() -> Self {
        // `RandomState` keys come from the OS once per process and differ per instance.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        h.write_u64(nanos);
        Jitter::seeded(h.finish())
    }
}

impl Jitter {
    /// A reproducible sequence (tests). A zero seed, which xorshift cannot leave, is replaced.
    pub fn seeded(seed: u64) -> Self {
        Jitter(AtomicU64::new(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed }))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sequences_started_together_do_not_draw_in_lockstep() {
        let draw = |j: &Jitter| (0..8).map(|_| j.next()).collect::<Vec<_>>();
        let (a, b) = (Jitter::default(), Jitter::default());
        assert_ne!(draw(&a), draw(&b));
    }

    #[test]
    fn an_injected_seed_is_reproducible_and_in_range() {
        let (a, b) = (Jitter::seeded(7), Jitter::seeded(7));
        for _ in 0..100 {
            let x = a.next();
            assert_eq!(x, b.next());
            assert!((0.0..1.0).contains(&x));
        }
        assert!(Jitter::seeded(0).next() > 0.0);
    }
}
