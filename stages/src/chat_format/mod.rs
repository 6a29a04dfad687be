//! `chat.format`: problems become conversations (system, user, assistant) rendered in a
//! chat template, with the byte span each speaker produces.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::DataType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::standard;
use crate::stage::{Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;
use crate::table::build::{self, Value};
use crate::template::{Message, Template};

pub struct ChatFormat;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub template: Template,
    /// The system message; empty for none.
    pub system: String,
    /// The column holding the user's message.
    pub user: String,
    /// The column holding the assistant's answer.
    pub assistant: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            template: Template::Chatml,
            system: crate::template::MATH_SYSTEM.into(),
            user: "question".into(),
            assistant: "solution".into(),
        }
    }
}

impl Params {
    /// The conversation for one item.
    pub fn messages(&self, user: &str, assistant: Option<&str>) -> Vec<Message> {
        let mut messages = Vec::with_capacity(3);
        if !self.system.is_empty() {
            messages.push(Message::new("system", &self.system));
        }
        messages.push(Message::new("user", user));
        if let Some(answer) = assistant {
            messages.push(Message::new("assistant", answer));
        }
        messages
    }
}

impl Stage for ChatFormat {
    type Params = Params;
    const KIND: &'static str = "chat.format";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "render items as conversations in a chat template (ChatML)";

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[("id", "int64"), ("family", "string")]),
            about: "items with the user and assistant columns named by the parameters",
            optional: false,
        }]
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        if let Some(Artifact::Table(schema)) = inputs.get("data") {
            for (path, column) in [("user", &params.user), ("assistant", &params.assistant)] {
                match schema.column(column) {
                    Some(c) if c.ty.data == DataType::Utf8 => {}
                    Some(c) => {
                        return Err(StageError::param(path, format!("column `{column}` is {}, not string", c.ty)));
                    }
                    None => {
                        return Err(StageError::param(
                            path,
                            format!("the input table `{}` has no column `{column}`", schema.name),
                        ));
                    }
                }
            }
        }
        Ok(vec![OutputDecl::table("chats", standard::chats())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let input = ctx.table("data")?;
        ctx.progress().start(input.num_rows()? as u64, "rows");
        let mut writer = ctx.write_table("chats")?;
        let mut rows = 0;
        for batch in input.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let (ids, families) = (cols.i64s("id")?, cols.strings("family")?);
            let (users, answers) = (cols.strings(&params.user)?, cols.strings(&params.assistant)?);
            let rendered: Vec<(Vec<Message>, String, Vec<Vec<Value>>)> = (0..batch.num_rows())
                .into_par_iter()
                .map(|i| {
                    let messages = params.messages(users.value(i), Some(answers.value(i)));
                    let r = params.template.render(&messages);
                    let turns = r
                        .turns
                        .iter()
                        .map(|t| vec![Value::Str(t.role.into()), Value::I32(t.start as i32), Value::I32(t.end as i32)])
                        .collect();
                    let text = r.text;
                    (messages, text, turns)
                })
                .collect();
            let messages: Vec<Vec<Vec<Value>>> = rendered
                .iter()
                .map(|(m, _, _)| {
                    m.iter().map(|m| vec![Value::Str(m.role.clone()), Value::Str(m.content.clone())]).collect()
                })
                .collect();
            let turns: Vec<Vec<Vec<Value>>> = rendered.iter().map(|(_, _, t)| t.clone()).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(ids.values().to_vec())),
                Arc::new(families.clone()),
                build::list_struct(&[("role", DataType::Utf8), ("content", DataType::Utf8)], &messages),
                Arc::new(StringArray::from_iter_values(rendered.iter().map(|(_, t, _)| t))),
                build::list_struct(
                    &[("role", DataType::Utf8), ("start", DataType::Int32), ("end", DataType::Int32)],
                    &turns,
                ),
            ];
            writer.write_columns(columns)?;
            rows += batch.num_rows();
            ctx.progress().advance(batch.num_rows() as u64);
        }
        writer.finish()?;
        Ok(StageReport::default().metric("chats", rows).summary(format!("{rows} conversations")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::standard;
    use crate::testing;

    fn problems(dir: &std::path::Path) -> crate::context::Slot {
        testing::problems(
            dir,
            &[(7, "add", "What is 2 + 2?", "2+2=<<2+2=4>>4\n#### 4", "4"), (8, "sub", "Ünïcode 5 - 3?", "#### 2", "2")],
        )
    }

    #[test]
    fn conversations_carry_the_spans_each_speaker_produces() {
        let dir = tempfile::tempdir().unwrap();
        let input = problems(&dir.path().join("in"));
        ChatFormat::outputs(&Params::default(), &Default::default()).unwrap();
        testing::run::<ChatFormat>("{ system: Be brief. }", vec![("data", input)], &dir.path().join("out"), 0).unwrap();
        let batches = testing::read(&dir.path().join("out/chats"));
        let cols = Columns::new(&batches[0]);
        let text = cols.strings("text").unwrap().value(1).to_string();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nÜnïcode 5 - 3?<|im_end|>\n<|im_start|>assistant\n#### 2<|im_end|>\n"
        );
        let turns = cols.lists("turns").unwrap().value(1);
        let turns = turns.as_any().downcast_ref::<arrow::array::StructArray>().unwrap();
        let starts = turns.column(1).as_any().downcast_ref::<arrow::array::Int32Array>().unwrap();
        let ends = turns.column(2).as_any().downcast_ref::<arrow::array::Int32Array>().unwrap();
        let spans: Vec<&str> = (0..3).map(|i| &text[starts.value(i) as usize..ends.value(i) as usize]).collect();
        assert_eq!(spans, ["Be brief.<|im_end|>", "Ünïcode 5 - 3?<|im_end|>", "#### 2<|im_end|>"]);
    }

    #[test]
    fn a_missing_column_is_named_by_its_parameter() {
        let inputs = [("data".to_string(), Artifact::Table(standard::problems().clone()))].into_iter().collect();
        let params = Params { assistant: "answer_text".into(), ..Params::default() };
        match ChatFormat::outputs(&params, &inputs) {
            Err(StageError::Param { path, message }) => {
                assert_eq!(path, "assistant");
                assert!(message.contains("answer_text"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
