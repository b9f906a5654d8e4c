//! How the examples read their settings (`examples/env`): a value that is not UTF-8 is an
//! error naming the variable, never taken for unset (a `DRY_RUN` so written would leave every
//! policy enforced, a `REDIS_URL` would give memory budgets or another Redis). Alone in its
//! test binary: it sets the process's environment, which no other thread reads meanwhile.

#[path = "../examples/env/mod.rs"]
mod env;

#[cfg(unix)]
#[test]
fn a_setting_that_is_not_utf8_is_an_error_naming_it_and_an_unset_one_is_none() {
    use std::os::unix::ffi::OsStrExt;
    const NAME: &str = "TOWER_RATELIMIT_EXAMPLE_SETTING";
    std::env::remove_var(NAME);
    assert_eq!(env::var(NAME), Ok(None));
    std::env::set_var(NAME, "3004");
    assert_eq!(env::var(NAME), Ok(Some("3004".to_owned())));
    std::env::set_var(NAME, std::ffi::OsStr::from_bytes(b"1\xff"));
    let error = env::var(NAME).unwrap_err();
    assert!(
        error.starts_with(&format!("{NAME} must be UTF-8")),
        "{error}"
    );
}
