//! The unbiased pass@k estimator of the Codex paper: with n samples of which c pass,
//! pass@k = 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1..n} (1 - k/i) so
//! that no binomial coefficient overflows. Defined only for k <= n.

/// pass@k of one problem, or None when k > n.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let fail: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Some(1.0 - fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, with exact binomial coefficients.
    fn by_definition(n: u64, c: u64, k: u64) -> f64 {
        let choose = |n: u64, k: u64| -> f64 {
            if k > n {
                return 0.0;
            }
            (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        };
        1.0 - choose(n - c, k) / choose(n, k)
    }

    #[test]
    fn the_product_form_equals_the_definition() {
        for n in 1..=20 {
            for c in 0..=n {
                for k in 1..=n {
                    let got = pass_at_k(n, c, k).unwrap();
                    assert!((got - by_definition(n, c, k)).abs() < 1e-12, "n={n} c={c} k={k}");
                }
            }
        }
        assert!((pass_at_k(10, 3, 1).unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(pass_at_k(1, 1, 1), Some(1.0));
        assert_eq!(pass_at_k(5, 0, 2), Some(0.0));
    }

    #[test]
    fn k_above_n_has_no_value() {
        assert_eq!(pass_at_k(5, 2, 10), None);
        assert_eq!(pass_at_k(5, 2, 0), None);
    }
}
