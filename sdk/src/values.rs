//! Helpers for the free-form `google.protobuf.Struct` values that custom
//! tasks receive as parameters and return as output through `Inference/Run`.

use std::collections::BTreeMap;

use inferd_proto::prost_types::{value::Kind, ListValue, Struct, Value};

use crate::Error;

pub fn number(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

pub fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

pub fn boolean(b: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(b)),
    }
}

pub fn list(values: impl IntoIterator<Item = Value>) -> Value {
    Value {
        kind: Some(Kind::ListValue(ListValue {
            values: values.into_iter().collect(),
        })),
    }
}

/// A `Struct` from (key, value) pairs.
pub fn object<K: Into<String>>(fields: impl IntoIterator<Item = (K, Value)>) -> Struct {
    Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A `Struct` as a `Value`.
pub fn object_value<K: Into<String>>(fields: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(object(fields))),
    }
}

/// pipeline()'s `[{label, score}]` from (label, score) pairs, as the
/// models crate returns them.
pub fn label_scores(pairs: impl IntoIterator<Item = (String, f32)>) -> Vec<inferd_proto::v1::LabelScore> {
    pairs
        .into_iter()
        .map(|(label, score)| inferd_proto::v1::LabelScore { label, score })
        .collect()
}

/// Typed access to request parameters, with errors that name the parameter.
pub struct Params<'a> {
    fields: Option<&'a Struct>,
}

impl<'a> Params<'a> {
    pub fn new(parameters: Option<&'a Struct>) -> Self {
        Params { fields: parameters }
    }

    fn get(&self, name: &str) -> Option<&'a Kind> {
        self.fields
            .and_then(|s| s.fields.get(name))
            .and_then(|v| v.kind.as_ref())
            .filter(|k| !matches!(k, Kind::NullValue(_)))
    }

    /// A non-negative integer parameter.
    pub fn uint(&self, name: &str, default: u64) -> Result<u64, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(Kind::NumberValue(n)) if *n >= 0.0 && n.fract() == 0.0 => Ok(*n as u64),
            Some(_) => Err(Error::invalid_argument(format!(
                "parameter `{name}` must be a non-negative integer"
            ))),
        }
    }

    pub fn boolean(&self, name: &str, default: bool) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(Kind::BoolValue(b)) => Ok(*b),
            Some(_) => Err(Error::invalid_argument(format!(
                "parameter `{name}` must be true or false"
            ))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<&'a str>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Kind::StringValue(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Error::invalid_argument(format!("parameter `{name}` must be a string"))),
        }
    }

    /// Rejects parameters this task does not know, so typos do not pass silently.
    pub fn only(&self, known: &[&str]) -> Result<(), Error> {
        if let Some(s) = self.fields {
            if let Some(unknown) = s.fields.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(Error::invalid_argument(format!(
                    "unknown parameter `{unknown}` (known: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_read_defaults_values_and_reject_wrong_types() {
        let s = object([
            ("top", number(2.0)),
            ("lowercase", boolean(false)),
            ("name", string("x")),
        ]);
        let p = Params::new(Some(&s));
        assert_eq!(p.uint("top", 5).unwrap(), 2);
        assert_eq!(p.uint("missing", 5).unwrap(), 5);
        assert!(!p.boolean("lowercase", true).unwrap());
        assert_eq!(p.string("name").unwrap(), Some("x"));
        assert!(p.uint("name", 1).is_err());
        assert!(p.only(&["top", "lowercase"]).is_err());
        assert!(p.only(&["top", "lowercase", "name"]).is_ok());
    }
}
