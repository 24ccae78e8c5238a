//! Work budgets: a bound on what one request may ask of a model (sequences,
//! pixels, output bytes, ...), estimated before the work runs. Each has a
//! name ("max_sequences") a model's load may set it by, and an
//! `INFERD_MAX_*` environment variable that sets it for every model; a
//! refusal names both.

use std::collections::BTreeMap;

use crate::{Error, LoadContext};

/// One bound: its environment variable and the value in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub var: &'static str,
    pub max: u64,
}

impl Limit {
    /// The limit `var` with `default`, before the environment is read.
    pub const fn new(var: &'static str, default: u64) -> Self {
        Limit { var, max: default }
    }

    /// The name a model's load sets the limit by: the variable without
    /// "INFERD_", in lower case ("max_sequences").
    pub fn name(&self) -> String {
        self.var.trim_start_matches("INFERD_").to_ascii_lowercase()
    }

    /// The limit as the environment sets it (the default when unset); a
    /// value that is not a number above zero fails the load, naming `var`.
    pub fn from_env(self) -> Result<Self, Error> {
        Ok(Limit {
            max: crate::env_limit(self.var, self.max)?,
            ..self
        })
    }

    /// The limit for the model `ctx` loads: its own setting (LoadModel's
    /// `options.limits`) if it has one, else the environment's, else the
    /// default. Zero fails the load, naming the limit.
    pub fn for_model(self, ctx: &LoadContext) -> Result<Self, Error> {
        match ctx.limits.get(&self.name()) {
            Some(0) => Err(Error::invalid_argument(format!(
                "limit {} must be above 0",
                self.name()
            ))),
            Some(&max) => Ok(Limit { max, ..self }),
            None => self.from_env(),
        }
    }

    /// RESOURCE_EXHAUSTED, naming the limit and how to raise it, when
    /// `asked` (what `what` describes) is over it.
    pub fn check(&self, asked: u64, what: &str) -> Result<(), Error> {
        if asked <= self.max {
            return Ok(());
        }
        Err(Error::resource_exhausted(format!(
            "{what} is {asked}, over this model's limit of {} ({}); send a smaller request, \
             or raise the limit with the model's `{}` option or {} when starting the daemon",
            self.max,
            self.name(),
            self.name(),
            self.var
        )))
    }

    /// The limits as [`crate::proto::LoadedModel`] reports them, by name.
    pub fn report(limits: &[Limit]) -> BTreeMap<String, u64> {
        limits.iter().map(|l| (l.name(), l.max)).collect()
    }
}

/// INVALID_ARGUMENT naming the first limit asked for at load that the
/// loaded instance does not report (so does not apply), with those it does.
pub(crate) fn check_names(asked: &BTreeMap<String, u64>, known: &BTreeMap<String, u64>) -> Result<(), Error> {
    let Some(unknown) = asked.keys().find(|name| !known.contains_key(*name)) else {
        return Ok(());
    };
    let known: Vec<&str> = known.keys().map(String::as_str).collect();
    Err(Error::invalid_argument(if known.is_empty() {
        format!("unknown limit {unknown}: this task has no work limits")
    } else {
        format!("unknown limit {unknown}: this task's limits are {}", known.join(", "))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn asking_up_to_the_limit_passes_and_past_it_names_the_variable() {
        let limit = Limit::new("INFERD_MAX_TEST_WIDGETS", 10);
        assert!(limit.check(10, "widgets").is_ok());
        let refused = limit.check(11, "widgets").unwrap_err();
        assert_eq!(refused.code, Code::ResourceExhausted);
        assert!(
            refused.message.starts_with(
                "widgets is 11, over this model's limit of 10 (max_test_widgets); send a smaller request, \
                 or raise the limit with the model's `max_test_widgets` option or INFERD_MAX_TEST_WIDGETS"
            ),
            "{}",
            refused.message
        );
    }

    #[test]
    fn the_environment_sets_the_limit_and_a_bad_value_fails_naming_it() {
        let limit = Limit::new("INFERD_MAX_TEST_LIMIT_FROM_ENV", 7);
        assert_eq!(limit.from_env().unwrap().max, 7);
        std::env::set_var("INFERD_MAX_TEST_LIMIT_FROM_ENV", "3");
        assert_eq!(limit.from_env().unwrap().max, 3);
        std::env::set_var("INFERD_MAX_TEST_LIMIT_FROM_ENV", "0");
        let refused = limit.from_env().unwrap_err();
        assert!(
            refused.message.contains("INFERD_MAX_TEST_LIMIT_FROM_ENV"),
            "{}",
            refused.message
        );
        std::env::remove_var("INFERD_MAX_TEST_LIMIT_FROM_ENV");
    }

    #[test]
    fn a_model_setting_wins_over_the_environment_and_unknown_names_are_refused() {
        let limit = Limit::new("INFERD_MAX_TEST_MODEL_WIDGETS", 7);
        std::env::set_var("INFERD_MAX_TEST_MODEL_WIDGETS", "3");
        let mut ctx = LoadContext {
            task: "t".into(),
            model_name: "m".into(),
            model_dir: None,
            vocoder_dir: None,
            device: "cpu".into(),
            architecture: String::new(),
            limits: BTreeMap::new(),
            quantize: String::new(),
            dtype: String::new(),
            dtype_is_default: false,
        };
        assert_eq!(limit.for_model(&ctx).unwrap().max, 3);
        ctx.limits.insert("max_test_model_widgets".into(), 11);
        assert_eq!(limit.for_model(&ctx).unwrap().max, 11);
        ctx.limits.insert("max_test_model_widgets".into(), 0);
        assert!(limit
            .for_model(&ctx)
            .unwrap_err()
            .message
            .contains("max_test_model_widgets"));
        std::env::remove_var("INFERD_MAX_TEST_MODEL_WIDGETS");

        let known = Limit::report(&[limit]);
        let asked = BTreeMap::from([("max_test_model_widgets".to_string(), 5)]);
        assert!(check_names(&asked, &known).is_ok());
        let asked = BTreeMap::from([("max_gadgets".to_string(), 5)]);
        let refused = check_names(&asked, &known).unwrap_err();
        assert_eq!(refused.code, Code::InvalidArgument);
        assert_eq!(
            refused.message,
            "unknown limit max_gadgets: this task's limits are max_test_model_widgets"
        );
        assert!(check_names(&asked, &BTreeMap::new())
            .unwrap_err()
            .message
            .contains("no work limits"));
    }
}
