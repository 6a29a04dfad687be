//! Learning-rate schedules: a warm-up (linear, or of cosine shape), then cosine,
//! constant or linear decay, with the per-step values of the Hugging Face schedulers of
//! those names (`get_cosine_schedule_with_warmup` and friends: step 0 of a warm-up has
//! factor 0, the warm-up lasts `ceil(ratio * steps)` steps).
//!
//! Code-Qwen's multi-stage SFT: "the learning rate increases to the peaking value with
//! the cosine learning rate schedule (3% warm-up steps) and remains constant" is
//! `{ warmup: cosine, warmup_ratio: 0.03, decay: constant }`: during the warm-up the
//! factor is 0.5 (1 - cos(pi step / warmup)), after it 1.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    Cosine,
    Constant,
    Linear,
}

/// The shape of the warm-up from 0 to the peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    /// step / warmup (Hugging Face's).
    #[default]
    Linear,
    /// 0.5 (1 - cos(pi step / warmup)): slow at both ends.
    Cosine,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    pub warmup: Warmup,
    pub warmup_ratio: f64,
    pub decay: Decay,
    /// For cosine: the floor, as a fraction of the peak (`cosine_with_min_lr`).
    pub min_lr_ratio: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { warmup: Warmup::Linear, warmup_ratio: 0.03, decay: Decay::Cosine, min_lr_ratio: 0.0 }
    }
}

impl Schedule {
    pub fn warmup_steps(&self, total: u64) -> u64 {
        (self.warmup_ratio * total as f64).ceil() as u64
    }

    /// The factor of the peak learning rate for optimizer step `step` (from 0) of `total`.
    pub fn factor(&self, step: u64, total: u64) -> f64 {
        let warmup = self.warmup_steps(total);
        if step < warmup {
            let rise = step as f64 / warmup.max(1) as f64;
            return match self.warmup {
                Warmup::Linear => rise,
                Warmup::Cosine => 0.5 * (1.0 - (std::f64::consts::PI * rise).cos()),
            };
        }
        let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => {
                ((total.saturating_sub(step)) as f64 / (total.saturating_sub(warmup)).max(1) as f64).max(0.0)
            }
            Decay::Cosine => {
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of transformers' schedulers for 100 steps with warmup_ratio 0.03 (3 steps).
    #[test]
    fn factors_match_the_hugging_face_schedulers() {
        let cosine = Schedule::default();
        assert_eq!(cosine.warmup_steps(100), 3);
        assert_eq!(cosine.factor(0, 100), 0.0);
        assert!((cosine.factor(1, 100) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(cosine.factor(3, 100), 1.0);
        // step 50: progress 47/97, 0.5 (1 + cos(pi 47/97))
        let expected = 0.5 * (1.0 + (std::f64::consts::PI * 47.0 / 97.0).cos());
        assert!((cosine.factor(50, 100) - expected).abs() < 1e-12);
        let linear = Schedule { decay: Decay::Linear, ..cosine.clone() };
        assert!((linear.factor(50, 100) - 50.0 / 97.0).abs() < 1e-12);
        let constant = Schedule { decay: Decay::Constant, ..cosine.clone() };
        assert_eq!(constant.factor(99, 100), 1.0);
        let floor = Schedule { min_lr_ratio: 0.1, ..cosine };
        assert!((floor.factor(100, 100) - 0.1).abs() < 1e-12);
    }

    /// Code-Qwen's schedule, with the values a user computes by hand: 100 steps, 3 of
    /// warm-up: 0, 0.5 (1 - cos(pi/3)) = 0.25, 0.5 (1 - cos(2 pi/3)) = 0.75, then 1 to
    /// the end.
    #[test]
    fn a_cosine_warm_up_then_constant_rises_as_computed_by_hand() {
        let code_qwen =
            Schedule { warmup: Warmup::Cosine, warmup_ratio: 0.03, decay: Decay::Constant, min_lr_ratio: 0.0 };
        let factors: Vec<f64> = (0..6).map(|s| code_qwen.factor(s, 100)).collect();
        for (got, want) in factors.iter().zip([0.0, 0.25, 0.75, 1.0, 1.0, 1.0]) {
            assert!((got - want).abs() < 1e-12, "{factors:?}");
        }
        assert_eq!(code_qwen.factor(99, 100), 1.0);
    }
}
