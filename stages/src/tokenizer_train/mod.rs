//! `tokenizer.train`: a byte-level BPE tokenizer trained on the stage's text with the
//! `tokenizers` crate, numbers split into single digits as Qwen's tokenizer does, and
//! the chat template's special tokens as single tokens with the first ids.
//!
//! Byte-level means every byte has a token, so no text is ever unknown. The artifact is
//! a `tokenizer.json` any Hugging Face tokenizer library loads.

use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;
use crate::template::Template;
use crate::tokenizer_file::{save, tok_err};

pub struct TokenizerTrain;

/// The largest vocabulary `tokenizer.train` builds: training one allocates per token
/// pair, and a billion would take gigabytes before failing.
pub const MAX_VOCAB: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Size of the vocabulary, special tokens and the 256 byte tokens included.
    pub vocab_size: usize,
    /// Split numbers into single digits before BPE.
    pub split_digits: bool,
    /// A pair must occur this often to be merged.
    pub min_frequency: u64,
    /// The template whose special tokens the tokenizer holds.
    pub template: Template,
    /// The text column to train on.
    pub column: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            vocab_size: 1024,
            split_digits: true,
            min_frequency: 2,
            template: Template::Chatml,
            column: "text".into(),
        }
    }
}

impl Stage for TokenizerTrain {
    type Params = Params;
    const KIND: &'static str = "tokenizer.train";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "train a byte-level BPE tokenizer (digits split singly, chat special tokens)";

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[]),
            about: "a table with a text column",
            optional: false,
        }]
    }

    fn check(params: &Params) -> Result<()> {
        let floor = 256 + params.template.special_tokens().len();
        if params.vocab_size < floor {
            return Err(StageError::param(
                "vocab_size",
                format!("must be at least {floor} (256 bytes and the special tokens)"),
            ));
        }
        if params.vocab_size > MAX_VOCAB {
            return Err(StageError::param(
                "vocab_size",
                format!(
                    "{} is more than {MAX_VOCAB}, the most kiln trains (Qwen2's vocabulary is 151,646)",
                    params.vocab_size
                ),
            ));
        }
        Ok(())
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        if let Some(crate::stage::Artifact::Table(schema)) = inputs.get("data")
            && schema.column(&params.column).is_none()
        {
            return Err(StageError::param(
                "column",
                format!("the input table `{}` has no column `{}`", schema.name, params.column),
            ));
        }
        Ok(vec![OutputDecl::files("tokenizer", "tokenizer")])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let input = ctx.table("data")?;
        let mut texts = Vec::new();
        for batch in input.batches() {
            let batch = batch?;
            let column = Columns::new(&batch).strings(&params.column)?;
            texts.extend(column.iter().map(|t| t.unwrap_or("").to_string()));
        }
        ctx.progress().start(1, "tokenizer");
        let tokenizer = train(params, &texts)?;
        let dir = ctx.output_dir("tokenizer")?;
        save(&tokenizer, &dir)?;
        ctx.progress().advance(1);
        let size = tokenizer.get_vocab_size(true);
        Ok(StageReport::default()
            .metric("vocab_size", size)
            .metric("texts", texts.len())
            .summary(format!("vocabulary of {size}")))
    }
}

/// Trains the tokenizer on `texts`.
pub fn train(params: &Params, texts: &[String]) -> Result<Tokenizer> {
    let mut pre: Vec<PreTokenizerWrapper> = Vec::new();
    if params.split_digits {
        pre.push(Digits::new(true).into());
    }
    pre.push(ByteLevel::new(false, false, true).into());
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(Sequence::new(pre)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let special: Vec<AddedToken> =
        params.template.special_tokens().iter().map(|t| AddedToken::from(*t, true)).collect();
    tokenizer.add_special_tokens(special.clone()).map_err(tok_err)?;
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(params.vocab_size)
        .min_frequency(params.min_frequency)
        .special_tokens(special)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build()
        .into();
    // The trainer does not split added tokens out of its text (encoding does): feed it
    // the pieces between them, or merges are spent on `<|`, `im_` and `end|>`.
    let specials = params.template.special_tokens();
    let pieces = texts.iter().flat_map(|t| between(t, specials)).filter(|p| !p.is_empty());
    tokenizer.train(&mut trainer, pieces).map_err(tok_err)?;
    Ok(tokenizer)
}

/// The text between occurrences of any of `tokens`.
fn between<'a>(text: &'a str, tokens: &[&str]) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some((at, token)) = tokens.iter().filter_map(|t| rest.find(t).map(|at| (at, t))).min() {
        pieces.push(&rest[..at]);
        rest = &rest[at + token.len()..];
    }
    pieces.push(rest);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::CHATML_SPECIAL_TOKENS;

    fn corpus() -> Vec<String> {
        (0..300)
            .map(|i| {
                format!(
                    "<|im_start|>user\nWhat is {} + {}?<|im_end|>\n<|im_start|>assistant\nThe answer is {}.<|im_end|>\n",
                    i * 7,
                    i * 13,
                    i * 20
                )
            })
            .collect()
    }

    #[test]
    fn digits_are_single_tokens_and_specials_come_first() {
        let params = Params { vocab_size: 300, ..Params::default() };
        let tok = train(&params, &corpus()).unwrap();
        assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
        assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
        assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
        let enc = tok.encode("<|im_start|>user\n1234 + 56<|im_end|>", false).unwrap();
        let tokens = enc.get_tokens();
        assert_eq!(tokens[0], "<|im_start|>");
        assert_eq!(tokens.last().unwrap(), "<|im_end|>");
        for t in tokens {
            let digits = t.chars().filter(|c| c.is_ascii_digit()).count();
            assert!(digits <= 1, "{t:?} holds several digits");
        }
        // byte-level: text never seen decodes back unchanged
        let text = "Ünïcödé ✓ 98";
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    }

    #[test]
    fn no_merge_is_spent_on_the_special_tokens_text() {
        let tok = train(&Params { vocab_size: 400, ..Params::default() }, &corpus()).unwrap();
        let pieces: Vec<String> = tok
            .get_vocab(true)
            .into_keys()
            .filter(|t| !CHATML_SPECIAL_TOKENS.contains(&t.as_str()) && (t.contains("<|") || t.contains("|>")))
            .collect();
        assert!(pieces.is_empty(), "{pieces:?}");
        assert_eq!(between("a<|im_end|>\n<|im_start|>b", &CHATML_SPECIAL_TOKENS), ["a", "\n", "b"]);
    }

    #[test]
    fn training_twice_gives_the_same_bytes() {
        let params = Params { vocab_size: 320, ..Params::default() };
        let a = train(&params, &corpus()).unwrap().to_string(false).unwrap();
        let b = train(&params, &corpus()).unwrap().to_string(false).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_vocabulary_smaller_than_the_bytes_or_past_the_limit_is_named() {
        for vocab_size in [100, MAX_VOCAB + 1, 1_000_000_000] {
            let params = Params { vocab_size, ..Params::default() };
            let refused = TokenizerTrain::check(&params);
            assert!(matches!(refused, Err(StageError::Param { path, .. }) if path == "vocab_size"), "{vocab_size}");
        }
        assert!(TokenizerTrain::check(&Params { vocab_size: MAX_VOCAB, ..Params::default() }).is_ok());
    }
}
