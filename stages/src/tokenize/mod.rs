//! `tokenize`: token ids and a per-token loss mask derived from the conversation's roles.
//!
//! The mask comes from byte offsets: a token is trained when it starts inside a trained
//! range of a turn whose role is in `train_on`. Of a trained turn, the content is always
//! trained; of the template's own tokens, `template_tokens` says which are: by default
//! the end-of-turn token `<|im_end|>` (the model must learn to stop) but neither the
//! header `<|im_start|>role\n` nor the newline after `<|im_end|>`, which is TRL's
//! assistant-only loss. Turns are never tokenized separately, which would split tokens
//! differently at their boundaries than the model will see them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, StructArray};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::standard;
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::{Columns, build};
use crate::template::Template;
use crate::tokenizer_file::{self, tok_err};

pub struct Tokenize;

/// What to do with a conversation in which no token is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Untrained {
    /// Fail the stage, naming the conversation.
    Error,
    /// Leave it out and count it in the stage's metrics.
    Drop,
}

/// Which of the template's own tokens in a trained turn carry loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateTokens {
    /// `<|im_start|>role\n`
    pub header: bool,
    /// `<|im_end|>`
    pub end_of_turn: bool,
    /// The newline after `<|im_end|>`.
    pub separator: bool,
}

impl Default for TemplateTokens {
    fn default() -> Self {
        TemplateTokens { header: false, end_of_turn: true, separator: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Roles whose turns carry loss; the report's recipe masks system and user.
    pub train_on: Vec<String>,
    pub template_tokens: TemplateTokens,
    /// The template chat.format rendered with.
    pub template: Template,
    pub untrained: Untrained,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            train_on: vec!["assistant".into()],
            template_tokens: TemplateTokens::default(),
            template: Template::Chatml,
            untrained: Untrained::Error,
        }
    }
}

impl Stage for Tokenize {
    type Params = Params;
    const KIND: &'static str = "tokenize";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "token ids and a loss mask by role (train_on: [assistant])";

    fn inputs() -> &'static [InputDecl] {
        &[
            InputDecl {
                name: "data",
                accepts: Accepts::Table(&[
                    ("id", "int64"),
                    ("text", "string"),
                    ("turns", "list<struct<role:string,start:int32,end:int32>>"),
                ]),
                about: "conversations from chat.format",
                optional: false,
            },
            InputDecl {
                name: "tokenizer",
                accepts: Accepts::Files("tokenizer"),
                about: "the tokenizer",
                optional: false,
            },
        ]
    }

    fn check(params: &Params) -> Result<()> {
        if params.train_on.is_empty() {
            return Err(StageError::param("train_on", "name at least one role to train on"));
        }
        for (i, role) in params.train_on.iter().enumerate() {
            if !["system", "user", "assistant"].contains(&role.as_str()) {
                return Err(StageError::param(
                    format!("train_on[{i}]"),
                    format!("unknown role `{role}`; roles are system, user, assistant"),
                ));
            }
        }
        Ok(())
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::table("tokens", standard::tokens())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let tokenizer = tokenizer_file::load(ctx.files("tokenizer")?)?;
        let input = ctx.table("data")?;
        let origin = ctx.input("data")?.origin.clone();
        ctx.progress().start(input.num_rows()? as u64, "rows");
        let mut writer = ctx.write_table("tokens")?;
        let (mut rows, mut dropped, mut tokens, mut trained) = (0usize, 0usize, 0usize, 0usize);
        for batch in input.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let (ids, texts, turns) = (cols.i64s("id")?, cols.strings("text")?, cols.lists("turns")?);
            let encoded: Vec<(Vec<i32>, Vec<bool>)> = (0..batch.num_rows())
                .into_par_iter()
                .map(|i| {
                    let spans = trained_spans(texts.value(i), &turns.value(i), params)?;
                    let enc = tokenizer.encode(texts.value(i), false).map_err(tok_err)?;
                    let ids: Vec<i32> = enc.get_ids().iter().map(|&t| t as i32).collect();
                    let mask: Vec<bool> = enc
                        .get_offsets()
                        .iter()
                        .map(|&(start, _)| spans.iter().any(|&(s, e)| start >= s && start < e))
                        .collect();
                    Ok((ids, mask))
                })
                .collect::<Result<_>>()?;
            let mut keep = Vec::with_capacity(encoded.len());
            for (i, (_, mask)) in encoded.iter().enumerate() {
                let ok = mask.iter().any(|&m| m);
                if !ok && params.untrained == Untrained::Error {
                    return Err(StageError::data(
                        format!("{origin}: id {}", ids.value(i)),
                        format!(
                            "no token is trained (train_on: {:?}); set `untrained: drop` to leave such conversations out",
                            params.train_on
                        ),
                    ));
                }
                keep.push(ok);
            }
            let kept: Vec<usize> = (0..encoded.len()).filter(|&i| keep[i]).collect();
            dropped += encoded.len() - kept.len();
            let n_tokens: Vec<i32> = kept.iter().map(|&i| encoded[i].0.len() as i32).collect();
            let n_trained: Vec<i32> =
                kept.iter().map(|&i| encoded[i].1.iter().filter(|&&m| m).count() as i32).collect();
            tokens += n_tokens.iter().map(|&n| n as usize).sum::<usize>();
            trained += n_trained.iter().map(|&n| n as usize).sum::<usize>();
            rows += kept.len();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(kept.iter().map(|&i| ids.value(i)))),
                build::list_i32(kept.iter().map(|&i| encoded[i].0.as_slice())),
                build::list_bool(kept.iter().map(|&i| encoded[i].1.as_slice())),
                Arc::new(Int32Array::from(n_tokens)),
                Arc::new(Int32Array::from(n_trained)),
            ];
            writer.write_columns(columns)?;
            ctx.progress().advance(batch.num_rows() as u64);
        }
        writer.finish()?;
        Ok(StageReport::default()
            .metric("sequences", rows)
            .metric("dropped_untrained", dropped)
            .metric("tokens", tokens)
            .metric("trained_tokens", trained)
            .summary(format!(
                "{rows} sequences, {tokens} tokens ({:.1}% trained)",
                100.0 * trained as f64 / tokens.max(1) as f64
            )))
    }
}

/// The byte ranges trained in a conversation: of each turn whose role is trained, the
/// content and the template tokens `template_tokens` names.
fn trained_spans(text: &str, turns: &Arc<dyn Array>, params: &Params) -> Result<Vec<(usize, usize)>> {
    let turns = turns
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| StageError::Internal("turns is not a list of structs".into()))?;
    let cols = |name: &str| turns.column_by_name(name).cloned();
    let roles = cols("role").ok_or_else(|| StageError::Internal("turns has no role".into()))?;
    let roles = roles.as_any().downcast_ref::<arrow::array::StringArray>().expect("declared string");
    let starts = cols("start").ok_or_else(|| StageError::Internal("turns has no start".into()))?;
    let starts = starts.as_any().downcast_ref::<Int32Array>().expect("declared int32");
    let ends = cols("end").ok_or_else(|| StageError::Internal("turns has no end".into()))?;
    let ends = ends.as_any().downcast_ref::<Int32Array>().expect("declared int32");
    let policy = params.template_tokens;
    let mut spans = Vec::new();
    for i in (0..turns.len()).filter(|&i| params.train_on.iter().any(|r| r == roles.value(i))) {
        let parts = params.template.parts(text, roles.value(i), starts.value(i) as usize, ends.value(i) as usize);
        let chosen = [
            (policy.header, parts.header),
            (true, parts.content),
            (policy.end_of_turn, parts.end_of_turn),
            (policy.separator, parts.separator),
        ];
        spans.extend(chosen.into_iter().filter(|(on, r)| *on && !r.is_empty()).map(|(_, r)| (r.start, r.end)));
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Message, Template};
    use crate::testing;
    use crate::tokenizer_train;

    /// Writes conversations as chat.format would, and a tokenizer trained on them.
    fn inputs(dir: &std::path::Path, conversations: &[Vec<Message>]) -> Vec<(&'static str, crate::context::Slot)> {
        let texts: Vec<String> = conversations.iter().map(|c| Template::Chatml.render(c).text).collect();
        let tokenizer = tokenizer_train::train(
            &tokenizer_train::Params { vocab_size: 320, ..Default::default() },
            &texts.iter().cycle().take(200).cloned().collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("tok")).unwrap();
        tokenizer_file::save(&tokenizer, &dir.join("tok")).unwrap();
        let chats = testing::chats(&dir.join("chats"), conversations);
        vec![("data", chats), ("tokenizer", testing::files(&dir.join("tok"), "tokenizer"))]
    }

    fn tokens(dir: &std::path::Path) -> (Vec<Vec<i32>>, Vec<Vec<bool>>) {
        let batches = testing::read(&dir.join("out/tokens"));
        let cols = Columns::new(&batches[0]);
        let (ids, masks) = (cols.lists("input_ids").unwrap(), cols.lists("loss_mask").unwrap());
        (0..batches[0].num_rows())
            .map(|r| {
                let m = masks.value(r);
                let m = m.as_any().downcast_ref::<arrow::array::BooleanArray>().unwrap();
                (crate::table::list_i32(ids, r).unwrap(), m.values().iter().collect())
            })
            .unzip()
    }

    fn decode(dir: &std::path::Path, ids: &[i32]) -> String {
        let tok = tokenizer_file::load(&dir.join("tok")).unwrap();
        tok.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), false).unwrap()
    }

    #[test]
    fn only_the_assistant_turns_and_their_end_tokens_are_trained() {
        let dir = tempfile::tempdir().unwrap();
        let conversation = vec![
            Message::new("system", "Be exact."),
            Message::new("user", "What is 12 + 30?"),
            Message::new("assistant", "2+0=2, 1+3+0=4.\n#### 42"),
            Message::new("user", "Ünïcödé ✓ and 7?"),
            Message::new("assistant", "Sürely 7 ✓"),
        ];
        let inputs = inputs(dir.path(), &[conversation]);
        let report = testing::run::<Tokenize>("", inputs, &dir.path().join("out"), 0).unwrap();
        let (ids, masks) = tokens(dir.path());
        let trained: Vec<i32> = ids[0].iter().zip(&masks[0]).filter(|(_, m)| **m).map(|(t, _)| *t).collect();
        assert_eq!(decode(dir.path(), &trained), "2+0=2, 1+3+0=4.\n#### 42<|im_end|>Sürely 7 ✓<|im_end|>");
        // The whole text decodes back unchanged: no token is lost at a turn boundary.
        let text = Template::Chatml.render(&[Message::new("x", "y")]).text;
        assert!(text.starts_with("<|im_start|>"));
        assert!(decode(dir.path(), &ids[0]).contains("<|im_start|>assistant\nSürely 7 ✓<|im_end|>\n"));
        // Each digit is its own token.
        let tok = tokenizer_file::load(&dir.path().join("tok")).unwrap();
        for &id in &ids[0] {
            let piece = tok.id_to_token(id as u32).unwrap();
            assert!(piece.chars().filter(char::is_ascii_digit).count() <= 1, "{piece}");
        }
        assert_eq!(report.metrics["trained_tokens"], trained.len());
    }

    #[test]
    fn the_template_tokens_policy_chooses_header_end_and_separator() {
        let dir = tempfile::tempdir().unwrap();
        let conversation = vec![Message::new("user", "2 + 2?"), Message::new("assistant", "4")];
        let run = |with: &str, out: &str| {
            let inputs = inputs(dir.path(), std::slice::from_ref(&conversation));
            testing::run::<Tokenize>(with, inputs, &dir.path().join(out), 0).unwrap();
            let batches = testing::read(&dir.path().join(out).join("tokens"));
            let cols = Columns::new(&batches[0]);
            let ids = crate::table::list_i32(cols.lists("input_ids").unwrap(), 0).unwrap();
            let mask = cols.lists("loss_mask").unwrap().value(0);
            let mask = mask.as_any().downcast_ref::<arrow::array::BooleanArray>().unwrap().clone();
            let trained: Vec<i32> = ids.iter().zip(mask.values().iter()).filter(|(_, m)| *m).map(|(t, _)| *t).collect();
            decode(dir.path(), &trained)
        };
        assert_eq!(run("", "a"), "4<|im_end|>");
        assert_eq!(run("{ template_tokens: { end_of_turn: false } }", "b"), "4");
        assert_eq!(
            run("{ template_tokens: { header: true, separator: true } }", "c"),
            "<|im_start|>assistant\n4<|im_end|>\n"
        );
        assert_eq!(
            run("{ train_on: [user, assistant], template_tokens: { header: true } }", "d"),
            "<|im_start|>user\n2 + 2?<|im_end|><|im_start|>assistant\n4<|im_end|>"
        );
    }

    #[test]
    fn training_on_the_user_moves_the_mask() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path(), &[vec![Message::new("user", "hi 1"), Message::new("assistant", "yo 2")]]);
        testing::run::<Tokenize>("{ train_on: [user] }", inputs, &dir.path().join("out"), 0).unwrap();
        let (ids, masks) = tokens(dir.path());
        let trained: Vec<i32> = ids[0].iter().zip(&masks[0]).filter(|(_, m)| **m).map(|(t, _)| *t).collect();
        assert_eq!(decode(dir.path(), &trained), "hi 1<|im_end|>");
    }

    #[test]
    fn a_conversation_without_trained_tokens_is_an_error_or_a_counted_drop() {
        let dir = tempfile::tempdir().unwrap();
        let conversations = [
            vec![Message::new("user", "a"), Message::new("assistant", "b")],
            vec![Message::new("user", "only a question")],
        ];
        let err =
            testing::run::<Tokenize>("", inputs(dir.path(), &conversations), &dir.path().join("out"), 0).unwrap_err();
        assert!(err.to_string().contains("id 1") && err.to_string().contains("untrained: drop"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let report = testing::run::<Tokenize>(
            "{ untrained: drop }",
            inputs(dir.path(), &conversations),
            &dir.path().join("out"),
            0,
        )
        .unwrap();
        assert_eq!(report.metrics["dropped_untrained"], 1);
        assert_eq!(tokens(dir.path()).0.len(), 1);
    }

    #[test]
    fn an_unknown_role_is_named() {
        let p = Params { train_on: vec!["assistant".into(), "robot".into()], ..Params::default() };
        assert!(matches!(Tokenize::check(&p), Err(StageError::Param { path, .. }) if path == "train_on[1]"));
    }
}
