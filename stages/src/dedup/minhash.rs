//! MinHash signatures and LSH banding.
//!
//! A signature holds, per permutation, the minimum of `(a_i x + b_i) >> 32` over the
//! document's shingle hashes x (multiply-shift hashing, odd a_i: universal, and one
//! multiply per shingle and permutation). Two documents agree on a permutation with
//! probability equal to their Jaccard similarity. Banding splits the signature into
//! `bands` groups of `rows`; documents that agree on a whole band become candidates,
//! with probability 1 - (1 - s^rows)^bands for similarity s.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    pub fn new(permutations: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = (0..permutations).map(|_| rng.random::<u64>() | 1).collect();
        let b = (0..permutations).map(|_| rng.random::<u64>()).collect();
        MinHasher { a, b }
    }

    pub fn permutations(&self) -> usize {
        self.a.len()
    }

    /// The signature of a set of shingle hashes (all `u32::MAX` for an empty set).
    pub fn signature(&self, shingles: &[u64]) -> Vec<u32> {
        let mut sig = vec![u32::MAX; self.a.len()];
        for &x in shingles {
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let h = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                *s = (*s).min(h);
            }
        }
        sig
    }
}

/// The share of permutations on which two signatures agree: an estimate of Jaccard
/// similarity.
pub fn similarity(a: &[u32], b: &[u32]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

/// Bands and rows for a threshold, as datasketch chooses them: minimize the equally
/// weighted areas of false positives (similarity below the threshold, yet candidates)
/// and false negatives (above it, yet not), integrating the S-curve numerically.
pub fn optimal_bands(threshold: f64, permutations: usize) -> (usize, usize) {
    let probability = |s: f64, bands: usize, rows: usize| 1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32);
    let integrate = |f: &dyn Fn(f64) -> f64, from: f64, to: f64| {
        let steps = 200;
        let h = (to - from) / steps as f64;
        (0..steps).map(|i| f(from + (i as f64 + 0.5) * h)).sum::<f64>() * h
    };
    let mut best = (1, permutations, f64::INFINITY);
    for bands in 1..=permutations {
        for rows in 1..=permutations / bands {
            let false_positive = integrate(&|s| probability(s, bands, rows), 0.0, threshold);
            let false_negative = integrate(&|s| 1.0 - probability(s, bands, rows), threshold, 1.0);
            let error = 0.5 * false_positive + 0.5 * false_negative;
            if error < best.2 {
                best = (bands, rows, error);
            }
        }
    }
    (best.0, best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_estimate_jaccard() {
        let hasher = MinHasher::new(256, 1);
        let a: Vec<u64> = (0..100).map(|i| crate::text::hash(&format!("s{i}"))).collect();
        let b: Vec<u64> = (50..150).map(|i| crate::text::hash(&format!("s{i}"))).collect();
        // |a ∩ b| / |a ∪ b| = 50 / 150
        let estimate = similarity(&hasher.signature(&a), &hasher.signature(&b));
        assert!((estimate - 1.0 / 3.0).abs() < 0.08, "{estimate}");
        assert_eq!(similarity(&hasher.signature(&a), &hasher.signature(&a)), 1.0);
    }

    #[test]
    fn bands_follow_the_threshold() {
        let (bands, rows) = optimal_bands(0.7, 256);
        assert!(bands * rows <= 256);
        // The S-curve's midpoint (1/bands)^(1/rows) sits near the threshold.
        let midpoint = (1.0 / bands as f64).powf(1.0 / rows as f64);
        assert!((midpoint - 0.7).abs() < 0.1, "{bands} x {rows}: {midpoint}");
        let (b9, r9) = optimal_bands(0.9, 256);
        assert!(r9 > rows || b9 < bands);
    }
}
