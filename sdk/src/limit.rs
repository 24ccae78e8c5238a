//! Work budgets: a bound on what one request may ask of a model (sequences,
//! pixels, output bytes, ...), estimated before the work runs. Each has an
//! `INFERD_MAX_*` environment variable, read when a model loads (as
//! [`crate::env_limit`] reads it), and a refusal names that variable.

use crate::Error;

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

    /// The limit as the environment sets it (the default when unset); a
    /// value that is not a number above zero fails the load, naming `var`.
    pub fn from_env(self) -> Result<Self, Error> {
        Ok(Limit {
            max: crate::env_limit(self.var, self.max)?,
            ..self
        })
    }

    /// RESOURCE_EXHAUSTED, naming the limit and its variable, when `asked`
    /// (what `what` describes) is over it.
    pub fn check(&self, asked: u64, what: &str) -> Result<(), Error> {
        if asked <= self.max {
            return Ok(());
        }
        Err(Error::resource_exhausted(format!(
            "{what} is {asked}, over this model's limit of {} ({}); send a smaller request, \
             or raise {} when starting the daemon",
            self.max, self.var, self.var
        )))
    }
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
            refused
                .message
                .starts_with("widgets is 11, over this model's limit of 10 (INFERD_MAX_TEST_WIDGETS)"),
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
}
