//! The error for configuration that cannot work.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// A configuration that can never work, found when the layer or store is built, so that nothing
/// invalid reaches the request path. The message names the bad value and what to do instead.
///
/// Its `Debug` form is the message followed by its causes, which is what `main` prints when it
/// returns the error:
///
/// ```
/// let error = tower_ratelimit::RateLimitLayer::builder().build().unwrap_err();
/// assert_eq!(format!("{error:?}"), error.to_string());
/// assert!(format!("{error:?}").starts_with("RateLimitLayer has no policy"));
/// ```
pub struct ConfigError {
    message: Cow<'static, str>,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl ConfigError {
    /// A configuration error that `message` explains: what is wrong and what to do instead.
    /// For a [`Store`](crate::Store) of your own, whose `register` refuses a stack.
    ///
    /// ```
    /// let error = tower_ratelimit::ConfigError::new("the backend has no room for policy \"api\"");
    /// assert_eq!(error.to_string(), "the backend has no room for policy \"api\"");
    /// ```
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration error caused by `source`, such as a server that could not be reached.
    ///
    /// ```
    /// use std::error::Error;
    /// use std::io;
    ///
    /// let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
    /// let error = tower_ratelimit::ConfigError::with_source("could not reach the backend", refused);
    /// assert_eq!(error.source().unwrap().to_string(), "refused");
    /// assert_eq!(format!("{error:?}"), "could not reach the backend: refused");
    /// ```
    pub fn with_source(
        message: impl Into<Cow<'static, str>>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        ConfigError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&crate::log::Chain(self), f)
    }
}

impl fmt::Display for ConfigError {
    /// The message alone; the cause, if any, is the error's [`source`](Error::source).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<crate::QuotaError> for ConfigError {
    /// A quota that cannot work is a configuration that cannot work.
    ///
    /// ```
    /// fn quota(s: &str) -> Result<tower_ratelimit::Quota, tower_ratelimit::ConfigError> {
    ///     Ok(s.parse()?)
    /// }
    /// assert!(quota("0/s").unwrap_err().to_string().contains("rate is 0"));
    /// ```
    fn from(error: crate::QuotaError) -> Self {
        ConfigError::new(error.to_string())
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reads_as_the_message_and_its_causes() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = ConfigError::with_source("could not reach Redis at 127.0.0.1:1", refused);
        assert_eq!(
            format!("{error:?}"),
            "could not reach Redis at 127.0.0.1:1: refused"
        );
        assert_eq!(error.to_string(), "could not reach Redis at 127.0.0.1:1");
    }
}
