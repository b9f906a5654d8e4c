//! Reading the examples' settings from the environment.

use std::env::VarError;

/// The environment variable `name`, or `None` if it is unset; an error if it is set to
/// something that is not UTF-8, which must not pass for unset (the default port, memory
/// budgets instead of Redis, or every policy enforced in a dry run).
pub fn var(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(value)) => Err(format!("{name} must be UTF-8, got {value:?}")),
    }
}
