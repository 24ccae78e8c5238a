//! `run`: a custom plugin task, with parameters given as `--param KEY=VALUE`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use inferd_proto::prost_types::{value::Kind, ListValue, Struct, Value};
use inferd_proto::v1::{RunInput, RunRequest};
use serde_json::Value as Json;

use crate::connect::{status, Inference};
use crate::options::ModelArg;
use crate::output::Output;

/// Run a custom plugin task, e.g. `inferctl run word-count "some text" --param top=2`.
#[derive(clap::Args)]
pub struct Run {
    task: String,
    texts: Vec<String>,
    /// Parameter as KEY=VALUE (VALUE parsed as JSON when it can be).
    #[arg(long = "param")]
    params: Vec<String>,
    #[command(flatten)]
    model: ModelArg,
}

impl Run {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let request = RunRequest {
            model: self.model.name(),
            task: self.task,
            parameters: Some(parameters(&self.params)?),
            inputs: self
                .texts
                .into_iter()
                .map(|text| RunInput { text, data: vec![] })
                .collect(),
        };
        let response = client.run(request).await.map_err(status)?.into_inner();
        out.plugin_outputs(&response.results)
    }
}

/// The `--param KEY=VALUE` arguments as a Struct; a VALUE that is not JSON
/// is taken as a string.
fn parameters(params: &[String]) -> Result<Struct> {
    let mut fields = BTreeMap::new();
    for p in params {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param {p}: expected KEY=VALUE"))?;
        let json: Json = serde_json::from_str(v).unwrap_or_else(|_| Json::String(v.to_string()));
        fields.insert(k.to_string(), to_value(&json));
    }
    Ok(Struct { fields })
}

fn to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_param_value_is_json_when_it_parses_and_a_string_otherwise() {
        let params = ["top=2", "words=[\"a\"]", "name=plain text"].map(String::from);
        let fields = parameters(&params).unwrap().fields;
        assert_eq!(fields["top"].kind, Some(Kind::NumberValue(2.0)));
        let list = ListValue {
            values: vec![Value {
                kind: Some(Kind::StringValue("a".into())),
            }],
        };
        assert_eq!(fields["words"].kind, Some(Kind::ListValue(list)));
        assert_eq!(fields["name"].kind, Some(Kind::StringValue("plain text".into())));
    }

    #[test]
    fn a_param_without_an_equals_sign_is_refused_by_name() {
        let error = parameters(&["top".to_string()]).unwrap_err();
        assert_eq!(error.to_string(), "--param top: expected KEY=VALUE");
    }
}
