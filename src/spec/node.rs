//! A YAML document as a tree whose every node knows its span in the source.
//!
//! serde_yaml types values but forgets where they were; yaml-rust2's event parser knows
//! where they were. kiln parses events into this tree (positions), resolves each plain
//! scalar with serde_yaml (so values are typed exactly as serde_yaml types them), and
//! hands stage parameters to serde as JSON values.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Source, Span};

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in source order; keys are strings (kiln's format has no other keys).
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

impl Node {
    pub fn new(value: Value, span: Span) -> Self {
        Node { value, span }
    }

    /// What the value is, for messages: "a string", "a list".
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// The node as JSON, for serde.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => {
                entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect::<serde_json::Map<_, _>>().into()
            }
        }
    }

    /// The node as YAML, for the resolved pipeline text of a run.
    pub fn to_yaml(&self) -> serde_yaml::Value {
        use serde_yaml::Value as Y;
        match &self.value {
            Value::Null => Y::Null,
            Value::Bool(b) => Y::Bool(*b),
            Value::Int(i) => Y::Number((*i).into()),
            Value::Float(f) => Y::Number((*f).into()),
            Value::Str(s) => Y::String(s.clone()),
            Value::Seq(items) => Y::Sequence(items.iter().map(Node::to_yaml).collect()),
            Value::Map(entries) => {
                Y::Mapping(entries.iter().map(|(k, v)| (Y::String(k.name.clone()), v.to_yaml())).collect())
            }
        }
    }

    /// Builds a node from a serde_yaml value, every part spanning `span` (used for
    /// values given on the command line).
    pub fn from_yaml(value: &serde_yaml::Value, span: Span) -> Result<Node, String> {
        use serde_yaml::Value as Y;
        let value = match value {
            Y::Null => Value::Null,
            Y::Bool(b) => Value::Bool(*b),
            Y::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().ok_or("number out of range")?),
            },
            Y::String(s) => Value::Str(s.clone()),
            Y::Sequence(items) => Value::Seq(items.iter().map(|v| Node::from_yaml(v, span)).collect::<Result<_, _>>()?),
            Y::Mapping(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        let name = k.as_str().ok_or("map keys must be strings")?.to_string();
                        Ok((Key { name, span }, Node::from_yaml(v, span)?))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            Y::Tagged(t) => return Node::from_yaml(&t.value, span),
        };
        Ok(Node { value, span })
    }

    /// Deep merge for `extends:`: maps merge key by key, anything else is replaced.
    pub fn merge(&mut self, over: Node) {
        match (&mut self.value, over.value) {
            (Value::Map(base), Value::Map(over_entries)) => {
                for (key, value) in over_entries {
                    match base.iter_mut().find(|(k, _)| k.name == key.name) {
                        Some((_, existing)) => existing.merge(value),
                        None => base.push((key, value)),
                    }
                }
            }
            (_, value) => {
                self.value = value;
                self.span = over.span;
            }
        }
    }
}

/// Parses a source text into a node tree (an empty document is an empty map).
pub fn parse(file: FileId, source: &Source) -> Result<Node, Diagnostic> {
    let mut builder = Builder { file, source, stack: Vec::new(), anchors: Vec::new(), root: None, error: None };
    let mut parser = Parser::new_from_str(&source.text);
    if let Err(e) = parser.load(&mut builder, false) {
        let at = source.offset(e.marker().line(), e.marker().col());
        let info = e.info().to_string();
        return Err(Diagnostic::new(format!("invalid YAML: {info}"), Span::new(file, at, at + 1)));
    }
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or_else(|| Node::new(Value::Map(Vec::new()), Span::new(file, 0, 0))))
}

enum Frame {
    Seq { items: Vec<Node>, start: usize, anchor: usize },
    Map { entries: Vec<(Key, Node)>, key: Option<Key>, start: usize, anchor: usize },
}

struct Builder<'a> {
    file: FileId,
    source: &'a Source,
    stack: Vec<Frame>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    error: Option<Diagnostic>,
}

impl Builder<'_> {
    fn offset(&self, mark: Marker) -> usize {
        self.source.offset(mark.line(), mark.col())
    }

    /// The byte length of a scalar in the source, from its start.
    fn scalar_len(&self, start: usize, style: TScalarStyle, value: &str) -> usize {
        let rest = &self.source.text[start..];
        match style {
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                let quote = if style == TScalarStyle::SingleQuoted { '\'' } else { '"' };
                let mut escaped = false;
                for (i, c) in rest.char_indices().skip(1) {
                    if c == quote && !escaped {
                        return i + 1;
                    }
                    escaped = c == '\\' && !escaped && quote == '"';
                }
                rest.len()
            }
            TScalarStyle::Plain => {
                if rest.starts_with(value) {
                    value.len()
                } else {
                    rest.find(['\n', ',', ']', '}', '#']).unwrap_or(rest.len()).max(1)
                }
            }
            _ => rest.find('\n').unwrap_or(rest.len()),
        }
    }

    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => match node.value {
                    Value::Str(name) => *key = Some(Key { name, span: node.span }),
                    Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Null => {
                        let name = self.source.text[node.span.start..node.span.end].to_string();
                        *key = Some(Key { name, span: node.span });
                    }
                    _ => {
                        if self.error.is_none() {
                            self.error = Some(Diagnostic::new("map keys must be plain names", node.span));
                        }
                        *key = Some(Key { name: String::new(), span: node.span });
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let at = self.offset(mark);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let len = self.scalar_len(at, style, &text);
                let span = Span::new(self.file, at, at + len);
                let value = if style == TScalarStyle::Plain { resolve_plain(&text) } else { Value::Str(text) };
                self.push(Node::new(value, span), anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq { items: Vec::new(), start: at, anchor }),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map { entries: Vec::new(), key: None, start: at, anchor })
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, start, anchor }) = self.stack.pop() {
                    let span = Span::new(self.file, start, at.max(start + 1));
                    self.push(Node::new(Value::Seq(items), span), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { entries, start, anchor, .. }) = self.stack.pop() {
                    // A block map's span starts at its first key.
                    let start = entries.first().map_or(start, |(k, _)| k.span.start.min(start));
                    let span = Span::new(self.file, start, at.max(start + 1));
                    self.push(Node::new(Value::Map(entries), span), anchor);
                }
            }
            Event::Alias(id) => {
                let found = self.anchors.iter().rev().find(|(a, _)| *a == id).map(|(_, n)| n.clone());
                match found {
                    Some(node) => self.push(node, 0),
                    None => {
                        let span = Span::new(self.file, at, at + 1);
                        if self.error.is_none() {
                            self.error = Some(Diagnostic::new("unknown alias", span));
                        }
                        self.push(Node::new(Value::Null, span), 0);
                    }
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

/// Types a plain scalar as serde_yaml does (YAML 1.2: `true`, `~`, `1e-3`, `0x1f`).
fn resolve_plain(text: &str) -> Value {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Null) => Value::Null,
        Ok(serde_yaml::Value::Bool(b)) => Value::Bool(b),
        Ok(serde_yaml::Value::Number(n)) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => n.as_f64().map_or(Value::Str(text.into()), Value::Float),
        },
        _ => Value::Str(text.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> (Source, Node) {
        let source = Source::new("t.yaml", None, text.into());
        let node = parse(0, &source).unwrap();
        (source, node)
    }

    #[test]
    fn spans_point_at_values() {
        let (src, node) = parse_text("a: 1\nb:\n  c: 'x y'\n  d: [1.5, two]\n");
        let c = node.get("b").unwrap().get("c").unwrap();
        assert_eq!(&src.text[c.span.start..c.span.end], "'x y'");
        assert_eq!(c.value, Value::Str("x y".into()));
        let d = node.get("b").unwrap().get("d").unwrap();
        let Value::Seq(items) = &d.value else { panic!() };
        assert_eq!(items[0].value, Value::Float(1.5));
        assert_eq!(&src.text[items[1].span.start..items[1].span.end], "two");
        let (k, _) = &node.as_map().unwrap()[1];
        assert_eq!(&src.text[k.span.start..k.span.end], "b");
    }

    #[test]
    fn scalars_are_typed_like_serde_yaml() {
        let (_, node) = parse_text("a: 1.0e-3\nb: true\nc: ~\nd: 'true'\ne: 007\n");
        assert_eq!(node.get("a").unwrap().value, Value::Float(1.0e-3));
        assert_eq!(node.get("b").unwrap().value, Value::Bool(true));
        assert_eq!(node.get("c").unwrap().value, Value::Null);
        assert_eq!(node.get("d").unwrap().value, Value::Str("true".into()));
        // as in serde_yaml, a leading zero makes a string, not an octal number
        assert_eq!(node.get("e").unwrap().value, Value::Str("007".into()));
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let (_, node) = parse_text("a: &s hello\nb: *s\n");
        assert_eq!(node.get("b").unwrap().value, Value::Str("hello".into()));
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let source = Source::new("t.yaml", None, "a: [1\nb: 2\n".into());
        let err = parse(0, &source).unwrap_err();
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        assert_eq!(source.line_col(err.span.unwrap().start).0, 2);
    }

    #[test]
    fn merge_is_deep_for_maps_only() {
        let (_, mut base) = parse_text("x: {a: 1, b: {c: 2, d: 3}}\nl: [1, 2]\n");
        let (_, over) = parse_text("x: {b: {c: 5}}\nl: [9]\n");
        base.merge(over);
        assert_eq!(base.to_json(), serde_json::json!({"x": {"a": 1, "b": {"c": 5, "d": 3}}, "l": [9]}));
    }
}
