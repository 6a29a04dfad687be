//! A YAML document as a tree whose every node knows its span in the source.
//!
//! serde_yaml types values but forgets where they were; yaml-rust2's event parser knows
//! where they were. kiln parses events into this tree (positions), resolves each plain
//! scalar with serde_yaml (so values are typed exactly as serde_yaml types them), and
//! hands stage parameters to serde as JSON values.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
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

/// How deeply maps and lists may nest (kiln's own files need six levels).
pub const MAX_DEPTH: usize = 64;
/// How many nodes aliases may expand to in one file, in total: a "billion laughs" of
/// nested aliases stops here instead of filling memory.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Parses a source text into a node tree (an empty document is an empty map). The
/// parser is driven one event at a time, so nothing recurses on the input's nesting and
/// the first error stops the reading: a second document, a tag, a duplicate key,
/// nesting deeper than [`MAX_DEPTH`], aliases past [`MAX_ALIAS_NODES`].
pub fn parse(file: FileId, source: &Source) -> Result<Node, Diagnostic> {
    let mut builder = Builder {
        file,
        source,
        stack: Vec::new(),
        anchors: Vec::new(),
        aliased: 0,
        root: None,
        cursor: (0, 0, 0, 0),
        documents: 0,
    };
    let mut parser = Parser::new_from_str(&source.text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let at = builder.offset(*e.marker());
            Diagnostic::new(format!("invalid YAML: {}", e.info()), Span::new(file, at, source.next_char(at)))
        })?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, mark)?;
    }
    Ok(builder.root.unwrap_or_else(|| Node::new(Value::Map(Vec::new()), Span::new(file, 0, 0))))
}

enum Frame {
    Seq { items: Vec<Node>, start: usize, anchor: usize },
    Map { entries: Vec<(Key, Node)>, seen: HashMap<String, Span>, key: Option<Key>, start: usize, anchor: usize },
}

struct Builder<'a> {
    file: FileId,
    source: &'a Source,
    stack: Vec<Frame>,
    /// Anchored nodes with their node counts.
    anchors: Vec<(usize, Node, usize)>,
    /// Nodes added by aliases so far.
    aliased: usize,
    root: Option<Node>,
    /// The last position turned into an offset (line, column, byte, the line's end):
    /// events come in order, so the next is found by walking on from it, not from its
    /// line's start (a one-line file of a megabyte stays linear).
    cursor: (usize, usize, usize, usize),
    documents: usize,
}

/// The nodes of a tree (itself included).
fn count(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(count).sum(),
        Value::Map(entries) => entries.iter().map(|(_, v)| 1 + count(v)).sum(),
        _ => 0,
    }
}

impl Builder<'_> {
    /// The byte offset of a parser position (1-based line, 0-based column in characters).
    fn offset(&mut self, mark: Marker) -> usize {
        let (line, col) = (mark.line(), mark.col());
        let text = &self.source.text;
        let (mut at_col, mut at, line_end) = match self.cursor {
            (l, c, b, end) if l == line && c <= col => (c, b, end),
            _ => {
                let Some(start) = self.source.line_start(line) else {
                    return text.len();
                };
                (0, start, text[start..].find('\n').map_or(text.len(), |i| start + i))
            }
        };
        // Only the characters between the cursor and the position are looked at.
        let ahead = (col - at_col).min(line_end - at);
        if text.as_bytes()[at..at + ahead].is_ascii() {
            at += ahead;
        } else {
            for c in text[at..line_end].chars() {
                if at_col == col {
                    break;
                }
                at += c.len_utf8();
                at_col += 1;
            }
        }
        self.cursor = (line, col, at, line_end);
        at
    }

    /// Where a collection that starts at `start` and whose end event is at `at` ends:
    /// after its closing bracket in flow style, where the next token starts in block
    /// style; at least one character.
    fn end_of_collection(&self, start: usize, at: usize) -> usize {
        let closed = self.source.text[at..].starts_with([']', '}']);
        let end = if closed { at + 1 } else { at };
        end.max(self.source.next_char(start))
    }

    fn error(&self, message: impl Into<String>, at: usize) -> Diagnostic {
        Diagnostic::new(message, Span::new(self.file, at, self.source.next_char(at)))
    }

    /// The byte length of a scalar in the source, from its start (on a character
    /// boundary, at least one character).
    fn scalar_len(&self, start: usize, style: TScalarStyle, value: &str) -> usize {
        let rest = &self.source.text[start..];
        let len = match style {
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                let quote = if style == TScalarStyle::SingleQuoted { '\'' } else { '"' };
                let mut escaped = false;
                let mut end = rest.len();
                for (i, c) in rest.char_indices().skip(1) {
                    if c == quote && !escaped {
                        end = i + 1;
                        break;
                    }
                    escaped = c == '\\' && !escaped && quote == '"';
                }
                end
            }
            TScalarStyle::Plain if rest.starts_with(value) => value.len(),
            TScalarStyle::Plain => rest.find(['\n', ',', ']', '}', '#']).unwrap_or(rest.len()),
            _ => rest.find('\n').unwrap_or(rest.len()),
        };
        len.max(self.source.next_char(start) - start)
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), Diagnostic> {
        if anchor > 0 {
            let size = count(&node);
            self.anchors.push((anchor, node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, seen, key, .. }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => {
                    let name = match node.value {
                        Value::Str(name) => name,
                        Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Null => {
                            self.source.text[node.span.start..node.span.end].to_string()
                        }
                        _ => return Err(Diagnostic::new("map keys must be plain names", node.span)),
                    };
                    if let Some(first) = seen.get(&name) {
                        let (line, col) = self.source.line_col(first.start);
                        return Err(Diagnostic::new(format!("duplicate key `{name}`"), node.span).note(format!(
                            "`{name}` is first given at line {line}, column {col}; a key appears once in a map"
                        )));
                    }
                    seen.insert(name.clone(), node.span);
                    *key = Some(Key { name, span: node.span });
                }
            },
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, at: usize) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(format!("maps and lists nest deeper than {MAX_DEPTH} levels (the limit)"), at));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn no_tag(&self, tag: &Option<Tag>, at: usize) -> Result<(), Diagnostic> {
        match tag {
            None => Ok(()),
            Some(tag) => {
                let handle = if tag.handle == "tag:yaml.org,2002:" { "!!" } else { tag.handle.as_str() };
                Err(self.error(
                    format!(
                        "YAML tags (`{handle}{}`) are not part of a pipeline file; write the value as it is",
                        tag.suffix
                    ),
                    at,
                ))
            }
        }
    }

    fn on_event(&mut self, event: Event, mark: Marker) -> Result<(), Diagnostic> {
        let at = self.offset(mark);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.no_tag(&tag, at)?;
                let len = self.scalar_len(at, style, &text);
                let span = Span::new(self.file, at, at + len);
                let value = if style == TScalarStyle::Plain { resolve_plain(&text) } else { Value::Str(text) };
                self.push(Node::new(value, span), anchor)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.no_tag(&tag, at)?;
                self.open(Frame::Seq { items: Vec::new(), start: at, anchor }, at)?;
            }
            Event::MappingStart(anchor, tag) => {
                self.no_tag(&tag, at)?;
                let frame = Frame::Map { entries: Vec::new(), seen: HashMap::new(), key: None, start: at, anchor };
                self.open(frame, at)?;
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, start, anchor }) = self.stack.pop() {
                    let span = Span::new(self.file, start, self.end_of_collection(start, at));
                    self.push(Node::new(Value::Seq(items), span), anchor)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { entries, start, anchor, .. }) = self.stack.pop() {
                    // A block map's span starts at its first key.
                    let start = entries.first().map_or(start, |(k, _)| k.span.start.min(start));
                    let span = Span::new(self.file, start, self.end_of_collection(start, at));
                    self.push(Node::new(Value::Map(entries), span), anchor)?;
                }
            }
            Event::Alias(id) => {
                let Some((_, node, size)) = self.anchors.iter().rev().find(|(a, _, _)| *a == id) else {
                    return Err(self.error("unknown alias", at));
                };
                self.aliased += size;
                if self.aliased > MAX_ALIAS_NODES {
                    return Err(self.error(
                        format!("aliases expand to more than {MAX_ALIAS_NODES} nodes (the limit): an alias of aliases of aliases?"),
                        at,
                    ));
                }
                let node = node.clone();
                self.push(node, 0)?;
            }
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.error("a second YAML document: a pipeline file holds one", at));
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
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

    fn error_of(text: &str) -> (Source, Diagnostic) {
        let source = Source::new("t.yaml", None, text.into());
        let err = parse(0, &source).expect_err("an error");
        (source, err)
    }

    /// Each hostile form is one located error, on the line that holds it; nothing
    /// recurses on the nesting (the test thread's stack is the default 2 MiB).
    #[test]
    fn hostile_yaml_is_a_located_error() {
        let deep_maps: String = (0..10_000).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        let deep_flow = format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let compact = format!("a:\n{}x\n", "- ".repeat(3_000));
        let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            bomb += &format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", "));
        }
        let cases: Vec<(String, &str, usize)> = vec![
            ("a: 1\nb:\n  steps: 5\n  steps: 7\n".into(), "duplicate key `steps`", 4),
            ("stages:\n  x: {}\n  y: {}\n  x: {}\n".into(), "duplicate key `x`", 4),
            ("a: 1\n---\nb: 2\n".into(), "a second YAML document", 2),
            ("a: !!int 5\n".into(), "YAML tags (`!!int`)", 1),
            ("a: !custom {b: 1}\n".into(), "YAML tags (`!custom`)", 1),
            (deep_maps, "nest deeper than 64 levels", 65),
            (deep_flow, "invalid YAML", 1),
            (compact, "nest deeper than 64 levels", 2),
            (bomb, "aliases expand to more than 100000 nodes", 5),
            ("a: *nowhere\n".into(), "unknown anchor", 1),
        ];
        for (text, message, line) in cases {
            let (source, err) = error_of(&text);
            assert!(err.message.contains(message), "{message}: {}", err.message);
            assert_eq!(source.line_col(err.span.unwrap().start).0, line, "{message}");
        }
    }

    /// Non-ASCII text where the parser stops (the cases that made the renderer panic):
    /// the error renders, its caret on the right line.
    #[test]
    fn non_ascii_next_to_an_error_renders() {
        let cases = [
            "a:\n  b: { c: 5 }é\n",
            "a:\n  b: [1, 2]…\n",
            "a:\n  b: [1, 2]名前\n",
            "a:\n  \"b\"名: 1\n",
            "a:\n\t名前: 1\n",
            "a:\n  é: [1,\n\n",
        ];
        for text in cases {
            let (source, err) = error_of(text);
            let line = source.line_col(err.span.unwrap().start).0;
            let mut sources = crate::source::Sources::default();
            sources.add(source);
            let shown = err.render(&sources);
            assert!(shown.contains(&format!("t.yaml:{line}:")), "{text:?}: {shown}");
            assert!(line == 2 || text.ends_with("\n\n"), "{text:?}: {shown}");
        }
    }

    /// Spans of values after wide characters are byte ranges of those values, and a
    /// megabyte on one line parses (walking each line once, not once per value).
    #[test]
    fn spans_after_wide_characters_and_long_lines() {
        let (src, node) = parse_text("名前: {é: 'x…', b: [ü, 2]}\n");
        let map = node.get("名前").unwrap();
        let b = map.get("b").unwrap();
        assert_eq!(&src.text[b.span.start..b.span.end], "[ü, 2]");
        assert_eq!(&src.text[map.get("é").unwrap().span.start..map.get("é").unwrap().span.end], "'x…'");
        let line: Vec<String> = (0..60_000).map(|i| format!("k{i}: é{i}")).collect();
        let (src, node) = parse_text(&format!("m: {{{}}}\n", line.join(", ")));
        let last = node.get("m").unwrap().get("k59999").unwrap();
        assert_eq!(&src.text[last.span.start..last.span.end], "é59999");
    }

    #[test]
    fn merge_is_deep_for_maps_only() {
        let (_, mut base) = parse_text("x: {a: 1, b: {c: 2, d: 3}}\nl: [1, 2]\n");
        let (_, over) = parse_text("x: {b: {c: 5}}\nl: [9]\n");
        base.merge(over);
        assert_eq!(base.to_json(), serde_json::json!({"x": {"a": 1, "b": {"c": 5, "d": 3}}, "l": [9]}));
    }
}
