//! `kiln schema`: the JSON Schema (draft 2020-12) of the pipeline format, for editors
//! (the YAML language server reads it: `# yaml-language-server: $schema=kiln.schema.json`).
//! Each kind's `with` is described from its parameters at their defaults: the names
//! (no others allowed, as `kiln plan` enforces), their JSON types and defaults.

use serde_json::{Map, Value, json};

use crate::Registry;

/// The schema of one parameter, from its default value.
fn param_schema(default: &Value) -> Value {
    match default {
        // `None` by default (an optional parameter): any value; `kiln plan` checks it.
        Value::Null => json!({}),
        Value::Bool(_) => json!({ "type": "boolean", "default": default }),
        Value::Number(n) if n.is_u64() => json!({ "type": "integer", "minimum": 0, "default": default }),
        Value::Number(n) if n.is_i64() => json!({ "type": "integer", "default": default }),
        Value::Number(_) => json!({ "type": "number", "default": default }),
        Value::String(_) => json!({ "type": "string", "default": default }),
        Value::Array(_) => json!({ "type": "array", "default": default }),
        // An empty map at its default is a free-form map (field mappings, mixture weights).
        Value::Object(map) if map.is_empty() => json!({ "type": "object" }),
        Value::Object(map) => object_schema(map),
    }
}

fn object_schema(params: &Map<String, Value>) -> Value {
    let properties: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), param_schema(v))).collect();
    json!({ "type": "object", "additionalProperties": false, "properties": properties })
}

pub fn schema(registry: &Registry) -> Value {
    let kinds: Vec<&str> = registry.kinds().iter().map(|k| k.kind()).collect();
    let mut defs = Map::new();
    let mut cases = Vec::new();
    for kind in registry.kinds() {
        let mut with = match kind.default_params() {
            Value::Object(map) => object_schema(&map),
            _ => json!({ "type": "object" }),
        };
        with["description"] = json!(kind.about());
        let name = format!("with:{}", kind.kind());
        defs.insert(name.clone(), with);
        cases.push(json!({
            "if": { "properties": { "uses": { "const": kind.kind() } }, "required": ["uses"] },
            "then": { "properties": { "with": { "$ref": format!("#/$defs/{name}") } } }
        }));
    }
    let input = json!({
        "type": "string",
        "pattern": "^[^.\\s]+(\\.[^.\\s]+)?$",
        "description": "`stage` or `stage.output`"
    });
    defs.insert("input".into(), input);
    defs.insert(
        "stage".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "uses": { "enum": kinds, "description": "the stage kind (`kiln stages` lists them)" },
                "from": {
                    "description": "the inputs: `stage`, `stage.output`, or a map of input names to those",
                    "oneOf": [
                        { "$ref": "#/$defs/input" },
                        { "type": "object", "additionalProperties": { "$ref": "#/$defs/input" } }
                    ]
                },
                "with": { "type": "object", "description": "the kind's parameters" },
                "seed": { "type": "integer", "minimum": 0, "description": "this stage's seed instead of the pipeline's" }
            },
            "allOf": cases
        }),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "kiln pipeline",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "name": { "type": "string" },
            "seed": { "type": "integer", "minimum": 0 },
            "extends": { "type": "string", "description": "a pipeline file this one derives from; maps merge key by key" },
            "stages": { "type": "object", "additionalProperties": { "$ref": "#/$defs/stage" } }
        },
        "$defs": defs
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{STAGE_KEYS, TOP_KEYS};

    #[test]
    fn the_schema_lists_the_keys_the_reader_accepts() {
        let schema = schema(&Registry::default());
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&schema["properties"]), TOP_KEYS);
        assert_eq!(keys(&schema["$defs"]["stage"]["properties"]), STAGE_KEYS);
        let pack = &schema["$defs"]["with:pack"];
        assert_eq!(pack["additionalProperties"], false);
        assert_eq!(pack["properties"]["seq_len"], json!({ "type": "integer", "minimum": 0, "default": 1024 }));
        assert_eq!(schema["$defs"]["stage"]["allOf"].as_array().unwrap().len(), Registry::default().kinds().len());
    }
}
