//! The error for configuration that cannot work.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// A configuration that can never work, found when the layer or store is built, so that nothing
/// invalid reaches the request path. The message names the bad value and what to do instead.
#[derive(Debug)]
pub struct ConfigError {
    message: Cow<'static, str>,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration error caused by `source`, such as a server that could not be reached.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn with_source(
        message: impl Into<Cow<'static, str>>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        ConfigError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}
