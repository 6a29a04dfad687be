//! Chat templates: how a conversation becomes text, and which bytes of that text each
//! speaker produces.
//!
//! ChatML renders each message as `<|im_start|>{role}\n{content}<|im_end|>\n`. The span a
//! speaker produces is its content and its `<|im_end|>`; the header and the newline after
//! `<|im_end|>` belong to the template. Training on the assistant's spans is TRL's
//! assistant-only loss: the model learns to answer and to stop, never to write a header.

use serde::{Deserialize, Serialize};

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
        assert_eq!(
            Template::Chatml.prompt(&messages[..1]),
            "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
