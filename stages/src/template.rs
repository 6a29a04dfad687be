//! Chat templates: how a conversation becomes text, and which bytes of that text each
//! speaker produces.
//!
//! ChatML renders each message as `<|im_start|>{role}\n{content}<|im_end|>\n`. The span a
//! speaker produces is its content and its `<|im_end|>`; the header and the newline after
//! `<|im_end|>` belong to the template. Training on the assistant's spans is TRL's
//! assistant-only loss: the model learns to answer and to stop, never to write a header.

use serde::{Deserialize, Serialize};

/// The system message of math conversations by default, in `chat.format` and in the
/// prompts of `eval.math` (the Math-Qwen recipe's "reason step by step").
pub const MATH_SYSTEM: &str = "Please reason step by step.";

pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The special tokens of ChatML, in the order a trained tokenizer gives them ids 0, 1, 2.
pub const CHATML_SPECIAL_TOKENS: [&str; 3] = [END_OF_TEXT, IM_START, IM_END];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    #[default]
    Chatml,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

/// The byte range `[start, end)` of a rendered conversation that one speaker produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn<'a> {
    pub role: &'a str,
    pub start: usize,
    pub end: usize,
}

/// The byte ranges of one turn in a rendered conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnParts {
    /// `<|im_start|>role\n`
    pub header: std::ops::Range<usize>,
    pub content: std::ops::Range<usize>,
    /// `<|im_end|>`
    pub end_of_turn: std::ops::Range<usize>,
    /// The newline after `<|im_end|>`.
    pub separator: std::ops::Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered<'a> {
    pub text: String,
    pub turns: Vec<Turn<'a>>,
}

impl Template {
    /// The special tokens the template writes; a tokenizer must hold each as one token.
    pub fn special_tokens(self) -> &'static [&'static str] {
        match self {
            Template::Chatml => &CHATML_SPECIAL_TOKENS,
        }
    }

    /// The token that ends a turn; generation stops at it.
    pub fn end_of_turn(self) -> &'static str {
        match self {
            Template::Chatml => IM_END,
        }
    }

    pub fn render(self, messages: &[Message]) -> Rendered<'_> {
        let mut text = String::new();
        let mut turns = Vec::with_capacity(messages.len());
        for m in messages {
            self.header(&mut text, &m.role);
            let start = text.len();
            text.push_str(&m.content);
            text.push_str(IM_END);
            turns.push(Turn { role: &m.role, start, end: text.len() });
            text.push('\n');
        }
        Rendered { text, turns }
    }

    /// The template's own text around the span `[start, end)` of a turn `role` said in
    /// `text`: the header before it, the end-of-turn token closing it, the separator after.
    pub fn parts(self, text: &str, role: &str, start: usize, end: usize) -> TurnParts {
        match self {
            Template::Chatml => {
                let header = start.saturating_sub(IM_START.len() + role.len() + 1)..start;
                let closed = text.get(start..end).is_some_and(|span| span.ends_with(IM_END));
                let end_of_turn = if closed { end - IM_END.len()..end } else { end..end };
                let separator =
                    if text.get(end..).is_some_and(|rest| rest.starts_with('\n')) { end..end + 1 } else { end..end };
                TurnParts { header, content: start..end_of_turn.start, end_of_turn, separator }
            }
        }
    }

    /// The conversation so far followed by the header of the assistant's turn: the text
    /// a model continues to answer.
    pub fn prompt(self, messages: &[Message]) -> String {
        let mut text = self.render(messages).text;
        self.header(&mut text, "assistant");
        text
    }

    fn header(self, text: &mut String, role: &str) {
        match self {
            Template::Chatml => {
                text.push_str(IM_START);
                text.push_str(role);
                text.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_spans_cover_content_and_end_token() {
        let messages = [Message::new("user", "1+1?"), Message::new("assistant", "2")];
        let r = Template::Chatml.render(&messages);
        assert_eq!(r.text, "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n");
        let spans: Vec<&str> = r.turns.iter().map(|t| &r.text[t.start..t.end]).collect();
        assert_eq!(spans, ["1+1?<|im_end|>", "2<|im_end|>"]);
        let parts = Template::Chatml.parts(&r.text, "assistant", r.turns[1].start, r.turns[1].end);
        let at = |range: std::ops::Range<usize>| &r.text[range];
        assert_eq!(
            [at(parts.header), at(parts.content), at(parts.end_of_turn), at(parts.separator)],
            ["<|im_start|>assistant\n", "2", "<|im_end|>", "\n"]
        );
        assert_eq!(
            Template::Chatml.prompt(&messages[..1]),
            "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
