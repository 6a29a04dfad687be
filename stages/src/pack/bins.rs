//! Bin packing of sequence lengths into rows of a fixed capacity.
//!
//! Best-fit-decreasing keeps the rows' remaining capacities in an ordered set, so each
//! placement is one O(log rows) lookup of the smallest remaining capacity that fits;
//! first-fit-decreasing keeps them in a max segment tree and descends to the leftmost
//! row that fits. Both sort once: O(n log n) overall.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    BestFitDecreasing,
    FirstFitDecreasing,
    /// In input order, a new row whenever the next sequence does not fit (for comparison).
    Greedy,
}

/// Packs sequences (by their lengths, each at most `capacity`) into rows; each row lists
/// indices into `lengths`. Ties in length keep input order, so the result is
/// deterministic.
pub fn pack_lengths(lengths: &[usize], capacity: usize, algorithm: Algorithm) -> Vec<Vec<usize>> {
    debug_assert!(lengths.iter().all(|&l| l <= capacity));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if algorithm != Algorithm::Greedy {
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    }
    match algorithm {
        Algorithm::BestFitDecreasing => best_fit(&order, lengths, capacity),
        Algorithm::FirstFitDecreasing => first_fit(&order, lengths, capacity),
        Algorithm::Greedy => greedy(&order, lengths, capacity),
    }
}

fn best_fit(order: &[usize], lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    // (remaining capacity, row index)
    let mut open: BTreeSet<(usize, usize)> = BTreeSet::new();
    for &i in order {
        let len = lengths[i];
        let fit = open.range((len, 0)..).next().copied();
        let (remaining, row) = match fit {
            Some(entry) => {
                open.remove(&entry);
                entry
            }
            None => {
                rows.push(Vec::new());
                (capacity, rows.len() - 1)
            }
        };
        rows[row].push(i);
        if remaining - len > 0 {
            open.insert((remaining - len, row));
        }
    }
    rows
}

fn first_fit(order: &[usize], lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut tree = MaxTree::new(order.len().max(1));
    for &i in order {
        let len = lengths[i];
        let row = match tree.leftmost_at_least(len) {
            Some(row) if row < rows.len() => row,
            _ => {
                rows.push(Vec::new());
                tree.set(rows.len() - 1, capacity);
                rows.len() - 1
            }
        };
        rows[row].push(i);
        tree.set(row, tree.get(row) - len);
    }
    rows
}

fn greedy(order: &[usize], lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut remaining = 0;
    for &i in order {
        if lengths[i] > remaining || rows.is_empty() {
            rows.push(Vec::new());
            remaining = capacity;
        }
        rows.last_mut().expect("a row").push(i);
        remaining -= lengths[i];
    }
    rows
}

/// A segment tree of remaining capacities, answering "leftmost row with at least x".
struct MaxTree {
    size: usize,
    max: Vec<usize>,
}

impl MaxTree {
    fn new(n: usize) -> Self {
        let size = n.next_power_of_two();
        MaxTree { size, max: vec![0; 2 * size] }
    }

    fn get(&self, i: usize) -> usize {
        self.max[self.size + i]
    }

    fn set(&mut self, i: usize, value: usize) {
        let mut node = self.size + i;
        self.max[node] = value;
        while node > 1 {
            node /= 2;
            self.max[node] = self.max[2 * node].max(self.max[2 * node + 1]);
        }
    }

    fn leftmost_at_least(&self, x: usize) -> Option<usize> {
        if self.max[1] < x {
            return None;
        }
        let mut node = 1;
        while node < self.size {
            node = if self.max[2 * node] >= x { 2 * node } else { 2 * node + 1 };
        }
        Some(node - self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn check(rows: &[Vec<usize>], lengths: &[usize], capacity: usize) {
        let mut seen = vec![false; lengths.len()];
        for row in rows {
            assert!(row.iter().map(|&i| lengths[i]).sum::<usize>() <= capacity);
            for &i in row {
                assert!(!seen[i], "sequence {i} placed twice");
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "a sequence was lost");
    }

    /// The straightforward quadratic best-fit, as the reference.
    fn best_fit_reference(lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
        for i in order {
            let best = rows
                .iter()
                .enumerate()
                .filter(|(_, (rem, _))| *rem >= lengths[i])
                .min_by_key(|(r, (rem, _))| (*rem, *r))
                .map(|(r, _)| r);
            match best {
                Some(r) => {
                    rows[r].0 -= lengths[i];
                    rows[r].1.push(i);
                }
                None => rows.push((capacity - lengths[i], vec![i])),
            }
        }
        rows.into_iter().map(|(_, r)| r).collect()
    }

    #[test]
    fn every_algorithm_places_each_sequence_once_within_capacity() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20 {
            let capacity = rng.random_range(8..200);
            let lengths: Vec<usize> = (0..rng.random_range(0..300)).map(|_| rng.random_range(1..=capacity)).collect();
            for alg in [Algorithm::BestFitDecreasing, Algorithm::FirstFitDecreasing, Algorithm::Greedy] {
                check(&pack_lengths(&lengths, capacity, alg), &lengths, capacity);
            }
        }
    }

    #[test]
    fn best_fit_matches_the_quadratic_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..20 {
            let lengths: Vec<usize> = (0..500).map(|_| rng.random_range(1..=100)).collect();
            let fast = pack_lengths(&lengths, 128, Algorithm::BestFitDecreasing);
            let slow = best_fit_reference(&lengths, 128);
            let as_sets = |rows: &[Vec<usize>]| {
                let mut rows: Vec<Vec<usize>> = rows.to_vec();
                rows.iter_mut().for_each(|r| r.sort());
                rows.sort();
                rows
            };
            assert_eq!(as_sets(&fast), as_sets(&slow));
        }
    }

    #[test]
    fn decreasing_packs_tighter_than_greedy() {
        let lengths = [6, 5, 5, 4, 3, 3, 2, 2, 1, 1];
        let greedy = pack_lengths(&lengths, 8, Algorithm::Greedy).len();
        let bfd = pack_lengths(&lengths, 8, Algorithm::BestFitDecreasing).len();
        assert_eq!(bfd, 4); // 32 tokens in rows of 8: the lower bound
        assert!(greedy > bfd);
    }
}
