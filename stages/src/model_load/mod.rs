//! `model.load`: a Hugging Face Qwen2 checkpoint folder (`config.json` and
//! `model.safetensors`, or the shards its index names) as a model artifact, so that an
//! eval stage can take a published model exactly as it takes a trained one. The files
//! are hard-linked into the cache where the filesystem allows, copied where it does not;
//! their digests are part of the key, so a changed checkpoint is a new entry.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::model::checkpoint::{self, INDEX_FILE};
use crate::model::config::Qwen2Config;
use crate::stage::{ExternalFile, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct ModelLoad;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The checkpoint folder.
    pub path: String,
}

impl Stage for ModelLoad {
    type Params = Params;
    const KIND: &'static str = "model.load";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "a Hugging Face Qwen2 checkpoint folder as a model";

    fn inputs() -> &'static [InputDecl] {
        &[]
    }

    fn check(params: &Params) -> Result<()> {
        if params.path.is_empty() {
            return Err(StageError::param("path", "give the checkpoint folder (`--set stage.with.path=...`)"));
        }
        Ok(())
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::files("model", "model")])
    }

    fn external_files(params: &Params) -> Vec<ExternalFile> {
        files(Path::new(&params.path))
            .into_iter()
            .map(|path| ExternalFile { param: "path".into(), path: path.into(), folder: false })
            .collect()
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let dir = Path::new(&params.path);
        let config = Qwen2Config::load(dir)?;
        config.check("").map_err(|e| StageError::data(dir.join("config.json").display().to_string(), e.to_string()))?;
        let out = ctx.output_dir("model")?;
        let files = files(dir);
        ctx.progress().start(files.len() as u64, "files");
        for file in &files {
            let file = Path::new(file);
            let target = out.join(file.file_name().expect("checkpoint files have names"));
            if std::fs::hard_link(file, &target).is_err() {
                std::fs::copy(file, &target).map_err(|e| StageError::io(file, e))?;
            }
            ctx.progress().advance(1);
        }
        Ok(StageReport::default()
            .metric("files", files.len())
            .metric("layers", config.num_hidden_layers)
            .summary(format!("{} ({} files)", dir.display(), files.len())))
    }
}

/// config.json, the index if there is one, and the weight files.
fn files(dir: &Path) -> Vec<String> {
    let mut files = vec![dir.join("config.json")];
    if dir.join(INDEX_FILE).is_file() {
        files.push(dir.join(INDEX_FILE));
    }
    files.extend(checkpoint::weight_files(dir).unwrap_or_else(|_| vec![dir.join(INDEX_FILE)]));
    files.into_iter().map(|p| p.display().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn a_checkpoint_folder_becomes_a_model_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (model, _) = crate::model::Model::init(&crate::model::tests::tiny_config(), 4).unwrap();
        let source = dir.path().join("hf");
        std::fs::create_dir_all(&source).unwrap();
        checkpoint::save(&model, &source).unwrap();
        let with = format!("{{ path: {} }}", source.display());
        testing::run::<ModelLoad>(&with, vec![], &dir.path().join("out"), 0).unwrap();
        let loaded = checkpoint::load(&dir.path().join("out/model")).unwrap();
        assert_eq!(loaded.config.num_hidden_layers, model.config.num_hidden_layers);
        let err = testing::run::<ModelLoad>("{ path: /nonexistent/model }", vec![], &dir.path().join("o2"), 0);
        assert!(err.unwrap_err().to_string().contains("/nonexistent/model"));
    }
}
