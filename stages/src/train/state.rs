//! Saved training state: the optimizer's moments in a file beside the weights, and the
//! resumable checkpoints a `train` stage writes every `checkpoint_every` steps into its
//! scratch folder (which survives a killed run of the same key). A resumed run starts
//! from the newest complete checkpoint and ends with the same bytes as a run that was
//! never interrupted: the weights and moments are stored as exact f32, the row order is
//! recomputed from (seed, epoch) and the position in it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use kiln_kernels::adamw::AdamW;
use serde::{Deserialize, Serialize};

use super::StepLog;
use crate::error::{Result, StageError};
use crate::model::{Model, checkpoint};

/// The optimizer state in a model folder, with PyTorch's names for the moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The loop's position in a checkpoint folder.
const STATE_FILE: &str = "state.json";
/// Names the newest complete checkpoint folder; written last, by rename.
const LATEST: &str = "latest";

/// Where the training loop is: everything besides weights and moments that a resumed
/// run needs to continue exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Optimizer steps taken.
    pub step: u64,
    /// The row order's epoch and position in it.
    pub epoch: u64,
    pub at: usize,
    pub tokens: u64,
    pub trained_tokens: u64,
    pub log: Vec<StepLog>,
}

/// Writes the optimizer's moments and step count to `path`.
pub fn save_optimizer(optimizer: &AdamW, path: &Path) -> Result<()> {
    let names: Vec<(String, String)> =
        (0..optimizer.moments.len()).map(|i| (format!("exp_avg.{i}"), format!("exp_avg_sq.{i}"))).collect();
    let mut tensors: Vec<(&str, [usize; 1], &[f32])> = Vec::new();
    for ((m_name, v_name), (m, v)) in names.iter().zip(&optimizer.moments) {
        tensors.push((m_name, [m.len()], m));
        tensors.push((v_name, [v.len()], v));
    }
    let refs: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, s, v)| (*n, s.as_slice(), *v)).collect();
    let metadata = BTreeMap::from([("step".to_string(), optimizer.steps.to_string())]);
    checkpoint::write_f32s(path, &refs, metadata)
}

/// Reads an optimizer state written by `save_optimizer` for parameters of `sizes`.
pub fn load_optimizer(path: &Path, sizes: &[usize]) -> Result<AdamW> {
    let origin = path.display().to_string();
    let mut file = checkpoint::F32File::read(path)?;
    let steps = file
        .metadata
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StageError::data(origin.clone(), "no `step` in the metadata"))?;
    if file.tensors.len() != 2 * sizes.len() {
        return Err(StageError::data(
            origin,
            format!("holds the state of {} parameters, the model has {}", file.tensors.len() / 2, sizes.len()),
        ));
    }
    let mut moments = Vec::with_capacity(sizes.len());
    for (i, &n) in sizes.iter().enumerate() {
        let m = file.take(&format!("exp_avg.{i}"), &[n])?.to_vec1()?;
        let v = file.take(&format!("exp_avg_sq.{i}"), &[n])?.to_vec1()?;
        moments.push((m, v));
    }
    Ok(AdamW::from_state(moments, steps))
}

/// A checkpoint read back.
pub struct Resumed {
    pub model: Model,
    pub optimizer: AdamW,
    pub state: LoopState,
    pub dir: PathBuf,
}

/// Writes a complete checkpoint under `root`, then points `latest` at it and removes the
/// older ones. A kill at any moment leaves `latest` naming a complete checkpoint (or none).
pub fn save(root: &Path, model: &Model, optimizer: &AdamW, state: &LoopState) -> Result<()> {
    let name = format!("step-{:08}", state.step);
    let dir = root.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
    checkpoint::save(model, &dir)?;
    save_optimizer(optimizer, &dir.join(OPTIMIZER_FILE))?;
    let state_path = dir.join(STATE_FILE);
    let text = serde_json::to_string(state).expect("state serializes");
    std::fs::write(&state_path, text).map_err(|e| StageError::io(&state_path, e))?;
    for file in [checkpoint::WEIGHTS_FILE, "config.json", OPTIMIZER_FILE, STATE_FILE] {
        sync(&dir.join(file))?;
    }
    sync(&dir)?;
    let pointer = root.join(LATEST);
    let tmp = root.join(format!("{LATEST}.tmp"));
    std::fs::write(&tmp, &name).map_err(|e| StageError::io(&tmp, e))?;
    sync(&tmp)?;
    std::fs::rename(&tmp, &pointer).map_err(|e| StageError::io(&pointer, e))?;
    sync(root)?;
    for entry in std::fs::read_dir(root).map_err(|e| StageError::io(root, e))? {
        let entry = entry.map_err(|e| StageError::io(root, e))?;
        let other = entry.file_name().to_string_lossy().to_string();
        if other.starts_with("step-") && other != name {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// The newest complete checkpoint under `root`, if any.
pub fn latest(root: &Path) -> Result<Option<Resumed>> {
    let pointer = root.join(LATEST);
    if !pointer.is_file() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| StageError::io(&pointer, e))?;
    let dir = root.join(name.trim());
    let model = checkpoint::load(&dir)?;
    let optimizer = load_optimizer(&dir.join(OPTIMIZER_FILE), &model.parameter_sizes())?;
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| StageError::io(&state_path, e))?;
    let state =
        serde_json::from_str(&text).map_err(|e| StageError::data(state_path.display().to_string(), e.to_string()))?;
    Ok(Some(Resumed { model, optimizer, state, dir }))
}

fn sync(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| StageError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::tiny_config;

    #[test]
    fn a_checkpoint_reads_back_exactly() -> Result<()> {
        let root = tempfile::tempdir().unwrap();
        assert!(latest(root.path())?.is_none());
        let (model, _) = Model::init(&tiny_config(), 5)?;
        let mut optimizer = AdamW::new(&model.parameter_sizes());
        optimizer.steps = 7;
        for (i, (m, v)) in optimizer.moments.iter_mut().enumerate() {
            m.iter_mut().enumerate().for_each(|(j, x)| *x = (i * 31 + j) as f32 / 7.0);
            v.iter_mut().enumerate().for_each(|(j, x)| *x = 1.0 / (1 + i + j) as f32);
        }
        let log = vec![StepLog {
            step: 1,
            lr: 0.1 / 3.0,
            loss: 2.0f64.sqrt(),
            grad_norm: 1e-7,
            tokens: 5,
            trained_tokens: 3,
        }];
        let state = LoopState { step: 7, epoch: 2, at: 3, tokens: 40, trained_tokens: 20, log };
        save(root.path(), &model, &optimizer, &LoopState { step: 3, ..state.clone() })?;
        save(root.path(), &model, &optimizer, &state)?;
        let back = latest(root.path())?.expect("a checkpoint");
        assert_eq!(back.state, state);
        assert_eq!(back.dir.file_name().unwrap(), "step-00000007");
        assert!(!root.path().join("step-00000003").exists(), "older checkpoints are removed");
        assert_eq!(back.optimizer.steps, 7);
        assert_eq!(back.optimizer.moments, optimizer.moments);
        for ((a, _), (b, _)) in model.parameters().iter().zip(back.model.parameters()) {
            assert_eq!(a.flatten_all()?.to_vec1::<f32>()?, b.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }

    #[test]
    fn an_optimizer_state_for_another_model_is_refused() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OPTIMIZER_FILE);
        save_optimizer(&AdamW::new(&[3, 4]), &path)?;
        let err = load_optimizer(&path, &[3, 4, 5]).err().unwrap().to_string();
        assert!(err.contains("2 parameters, the model has 3"), "{err}");
        let err = load_optimizer(&path, &[3, 5]).err().unwrap().to_string();
        assert!(err.contains("exp_avg.1"), "{err}");
        Ok(())
    }
}
