//! The registry of stage kinds: one ordered list, which also orders `kiln stages`.

use crate::stage::{KindOf, StageKind};
use crate::{
    chat_format, code_generate, decontaminate, dedup, eval_code, eval_math, math_augment, math_generate, math_parse,
    mix, model_load, pack, report, source_code, source_json, source_jsonl, source_parquet, split, sql, tokenize,
    tokenizer_load, tokenizer_train, train,
};

/// The built-in kinds, in pipeline order.
pub static BUILTIN: &[&dyn StageKind] = &[
    &KindOf::<source_jsonl::SourceJsonl>::new(),
    &KindOf::<source_parquet::SourceParquet>::new(),
    &KindOf::<source_json::SourceJson>::new(),
    &KindOf::<source_code::SourceCode>::new(),
    &KindOf::<math_generate::MathGenerate>::new(),
    &KindOf::<math_parse::MathParse>::new(),
    &KindOf::<math_augment::MathAugment>::new(),
    &KindOf::<code_generate::CodeGenerate>::new(),
    &KindOf::<dedup::Dedup>::new(),
    &KindOf::<decontaminate::Decontaminate>::new(),
    &KindOf::<split::Split>::new(),
    &KindOf::<mix::Mix>::new(),
    &KindOf::<sql::Sql>::new(),
    &KindOf::<chat_format::ChatFormat>::new(),
    &KindOf::<tokenizer_train::TokenizerTrain>::new(),
    &KindOf::<tokenizer_load::TokenizerLoad>::new(),
    &KindOf::<tokenize::Tokenize>::new(),
    &KindOf::<pack::Pack>::new(),
    &KindOf::<model_load::ModelLoad>::new(),
    &KindOf::<train::Train>::new(),
    &KindOf::<eval_math::EvalMath>::new(),
    &KindOf::<eval_code::EvalCode>::new(),
    &KindOf::<report::Report>::new(),
];

/// The kinds a pipeline may use: the built-ins, plus any a program adds.
#[derive(Clone)]
pub struct Registry {
    kinds: Vec<&'static dyn StageKind>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { kinds: BUILTIN.to_vec() }
    }
}

impl Registry {
    /// Adds a kind (for example one defined outside this crate); a kind of the same name
    /// is replaced.
    pub fn with(mut self, kind: &'static dyn StageKind) -> Self {
        self.kinds.retain(|k| k.kind() != kind.kind());
        self.kinds.push(kind);
        self
    }

    pub fn get(&self, name: &str) -> Option<&'static dyn StageKind> {
        self.kinds.iter().copied().find(|k| k.kind() == name)
    }

    pub fn kinds(&self) -> &[&'static dyn StageKind] {
        &self.kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind that reads the stage seed must say so (`RANDOM`), or the seed is left out
    /// of its key and a run with another seed gets the cached output of the old one
    /// (code.generate and eval.code once did). Checked on the sources of each kind's
    /// module, so a new kind is covered without a test of its own.
    #[test]
    fn every_kind_that_reads_the_seed_puts_it_in_its_key() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for kind in Registry::default().kinds() {
            let dir = src.join(kind.kind().replace('.', "_"));
            let files = crate::records::files_under(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let reads_seed = files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "rs"))
                .any(|f| std::fs::read_to_string(f).unwrap().contains("ctx.seed"));
            assert!(!reads_seed || kind.random(), "`{}` reads ctx.seed but does not declare RANDOM", kind.kind());
            checked += usize::from(reads_seed);
        }
        assert!(checked >= 8, "the seed readers were found ({checked})");
    }
}
