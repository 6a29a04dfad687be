//! `tokenizer.load`: a Hugging Face `tokenizer.json` from a path (Qwen2's byte-level BPE
//! with its added tokens, or any other), checked before anything downstream uses it:
//! each special token of the chat template must be one token, encoded as itself.
//!
//! The artifact is the file's bytes unchanged, so its digest (and with it the key of
//! every stage downstream) is the file's: a different tokenizer never reuses tokens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::stage::{ExternalFile, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::template::Template;
use crate::tokenizer_file::TOKENIZER_FILE;

pub struct TokenizerLoad;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The `tokenizer.json` file (relative paths are from the current directory).
    pub path: String,
    /// The chat template whose special tokens the tokenizer must hold.
    pub template: Template,
}

impl Stage for TokenizerLoad {
    type Params = Params;
    const KIND: &'static str = "tokenizer.load";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "a Hugging Face tokenizer.json from a path, checked against the chat template";

    fn inputs() -> &'static [InputDecl] {
        &[]
    }

    fn check(params: &Params) -> Result<()> {
        if params.path.is_empty() {
            return Err(StageError::param("path", "name the tokenizer.json file"));
        }
        Ok(())
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::files("tokenizer", "tokenizer")])
    }

    fn external_files(params: &Params) -> Vec<ExternalFile> {
        vec![ExternalFile { param: "path".into(), path: PathBuf::from(&params.path), folder: false }]
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let bytes = std::fs::read(&params.path).map_err(|e| StageError::io(&params.path, e))?;
        let tokenizer = Tokenizer::from_bytes(&bytes)
            .map_err(|e| StageError::data(&params.path, format!("not a Hugging Face tokenizer.json: {e}")))?;
        check_special_tokens(&tokenizer, params.template).map_err(|why| StageError::data(&params.path, why))?;
        let dir = ctx.output_dir("tokenizer")?;
        let out = dir.join(TOKENIZER_FILE);
        std::fs::write(&out, &bytes).map_err(|e| StageError::io(&out, e))?;
        let size = tokenizer.get_vocab_size(true);
        Ok(StageReport::default().metric("vocab_size", size).summary(format!("vocabulary of {size}")))
    }
}

/// Each special token of the template must be one token of the vocabulary, and text
/// holding it must encode it as that token (an added, special token), not as pieces.
pub fn check_special_tokens(tokenizer: &Tokenizer, template: Template) -> std::result::Result<(), String> {
    for &special in template.special_tokens() {
        let Some(id) = tokenizer.token_to_id(special) else {
            return Err(format!("the chat template's special token `{special}` is not in the vocabulary"));
        };
        let text = format!("a{special}b");
        let encoding = tokenizer.encode(text.as_str(), false).map_err(|e| e.to_string())?;
        if !encoding.get_ids().contains(&id) {
            return Err(format!(
                "the chat template's special token `{special}` (id {id}) is split into pieces when it occurs in text; \
                 it must be an added special token"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use crate::tokenizer_train;

    fn trained() -> Tokenizer {
        let texts: Vec<String> = (0..200).map(|i| format!("<|im_start|>user\nWhat is {i}?<|im_end|>\n")).collect();
        tokenizer_train::train(&tokenizer_train::Params { vocab_size: 300, ..Default::default() }, &texts).unwrap()
    }

    #[test]
    fn a_tokenizer_with_the_templates_tokens_loads_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, trained().to_string(true).unwrap()).unwrap();
        let with = format!("{{ path: {:?} }}", path.display().to_string());
        let report = testing::run::<TokenizerLoad>(&with, vec![], &dir.path().join("out"), 0).unwrap();
        assert_eq!(report.metrics["vocab_size"], trained().get_vocab_size(true));
        let copied = std::fs::read(dir.path().join("out/tokenizer").join(TOKENIZER_FILE)).unwrap();
        assert_eq!(copied, std::fs::read(&path).unwrap());
    }

    #[test]
    fn a_missing_special_token_is_named() {
        // A tokenizer made for another template: its end-of-turn token is `<|end|>`.
        let text = trained().to_string(false).unwrap().replace("<|im_end|>", "<|end|>");
        let tokenizer = Tokenizer::from_bytes(text.as_bytes()).unwrap();
        let err = check_special_tokens(&tokenizer, Template::Chatml).unwrap_err();
        assert!(err.contains("`<|im_end|>` is not in the vocabulary"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, &text).unwrap();
        let with = format!("{{ path: {:?} }}", path.display().to_string());
        let err = testing::run::<TokenizerLoad>(&with, vec![], &dir.path().join("out"), 0).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("tokenizer.json") && message.contains("<|im_end|>"), "{message}");
    }

    #[test]
    fn a_special_token_that_is_not_added_is_refused() {
        // In the vocabulary, but not an added token: text holding it splits it.
        let mut json: serde_json::Value = serde_json::from_str(&trained().to_string(false).unwrap()).unwrap();
        json["added_tokens"].as_array_mut().unwrap().retain(|t| t["content"] != "<|im_start|>");
        let tokenizer = Tokenizer::from_bytes(serde_json::to_vec(&json).unwrap()).unwrap();
        let err = check_special_tokens(&tokenizer, Template::Chatml).unwrap_err();
        assert!(err.contains("`<|im_start|>`") && err.contains("split into pieces"), "{err}");
    }
}
