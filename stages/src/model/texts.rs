//! Text in, text out, as both eval stages need it: the stage's `model` and `tokenizer`
//! inputs continue rendered prompts until the template's end-of-turn token or a stop
//! sequence, batches in parallel; each output is decoded text with its number of new tokens.

use rayon::prelude::*;

use super::checkpoint;
use super::generate::{self, Decoding};
use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::template::Template;
use crate::tokenizer_file::{self, tok_err};

/// One continuation.
pub struct Generated {
    pub text: String,
    /// New tokens, the end-of-turn token excluded.
    pub tokens: usize,
}

/// Continues `prompts` with the stage's model; `seeds[i]` seeds prompt i when sampling.
/// A continuation also ends as soon as its text contains one of `stops` (kept in the
/// text: the caller cuts at the first), so a completion does not run on to
/// `max_new_tokens` after its function is written.
#[allow(clippy::too_many_arguments)]
pub fn generate_texts(
    ctx: &StageContext,
    template: Template,
    prompts: &[String],
    stops: &[String],
    max_new_tokens: usize,
    batch_size: usize,
    decoding: Decoding,
    seeds: &[u64],
) -> Result<Vec<Generated>> {
    let model = checkpoint::load(ctx.files("model")?)?;
    let tokenizer = tokenizer_file::load(ctx.files("tokenizer")?)?;
    let stop_token = template.end_of_turn();
    let stop = tokenizer
        .token_to_id(stop_token)
        .ok_or_else(|| StageError::Tokenizer(format!("the tokenizer has no `{stop_token}` token")))?;
    let encoded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| Ok(tokenizer.encode(p.as_str(), false).map_err(tok_err)?.get_ids().to_vec()))
        .collect::<Result<_>>()?;
    ctx.progress().start(prompts.len() as u64, "prompts continued");
    let progress = ctx.progress();
    let seed_chunks: Vec<&[u64]> = match decoding {
        Decoding::Greedy => vec![&[][..]; encoded.len().div_ceil(batch_size)],
        Decoding::Sample { .. } => seeds.chunks(batch_size).collect(),
    };
    let done = |ids: &[u32]| {
        !stops.is_empty()
            && tokenizer.decode(ids, false).is_ok_and(|text| stops.iter().any(|s| text.contains(s.as_str())))
    };
    let stop = generate::Stop { token: stop, done: &done };
    let outputs: Vec<Vec<u32>> = encoded
        .par_chunks(batch_size)
        .zip(seed_chunks)
        .map(|(batch, seeds)| {
            let out = generate::decode(&model, batch, &stop, max_new_tokens, decoding, seeds)?;
            progress.advance(batch.len() as u64);
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    outputs
        .iter()
        .map(|o| Ok(Generated { text: tokenizer.decode(o, false).map_err(tok_err)?, tokens: o.len() }))
        .collect()
}
