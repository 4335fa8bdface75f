//! `OCEAN__LOG_LEVEL`: the Python integration's log level (`ocean sail --log-level`), as the
//! default log filter of the roles. `RUST_LOG`, when set, is more specific and wins.

use serde::Deserialize;

use super::flex;

/// Ocean's levels (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`; `WARN` and `TRACE` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    /// Reads a level, in any case; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "TRACE" => Some(Self::Trace),
            "DEBUG" => Some(Self::Debug),
            "INFO" => Some(Self::Info),
            "WARNING" | "WARN" => Some(Self::Warning),
            "ERROR" | "CRITICAL" => Some(Self::Error),
            _ => None,
        }
    }

    /// The `tracing` filter of a role at this level. The AMQP client and the HTTP stack stay
    /// quieter than adoport's own modules, whose lines are the ones an operator needs.
    pub fn role_filter(self) -> &'static str {
        match self {
            Self::Trace => "trace,lapin=debug,h2=info,hyper_util=info,rustls=info",
            Self::Debug => "debug,lapin=info,h2=info,hyper_util=info,rustls=info,tower=info",
            Self::Info => "info,lapin=warn",
            Self::Warning => "warn",
            Self::Error => "error",
        }
    }
}

/// The variable.
pub const LOG_LEVEL_VARIABLE: &str = "OCEAN__LOG_LEVEL";

/// The filter `OCEAN__LOG_LEVEL` asks for, read before the settings (logging starts first). A
/// value that is not a level is ignored here; reading the settings then stops start-up naming it.
pub fn role_filter_from(vars: impl IntoIterator<Item = (String, String)>) -> Option<&'static str> {
    vars.into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(LOG_LEVEL_VARIABLE))
        .and_then(|(_, value)| LogLevel::parse(&value))
        .map(LogLevel::role_filter)
}

/// [`role_filter_from`] the process environment.
pub fn role_filter_from_env() -> Option<&'static str> {
    role_filter_from(std::env::vars())
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = flex::string(deserializer)?;
        LogLevel::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown log level \"{text}\"; expected DEBUG, INFO, WARNING, ERROR or CRITICAL"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocean_levels_become_role_filters() {
        let filter = |v: &str| role_filter_from([(LOG_LEVEL_VARIABLE.to_string(), v.to_string())]);
        assert_eq!(
            filter("DEBUG").map(|f| f.split(',').next()),
            Some(Some("debug"))
        );
        assert_eq!(filter("warning"), Some("warn"));
        assert_eq!(filter("CRITICAL"), Some("error"));
        assert_eq!(filter("loud"), None);
        assert_eq!(
            role_filter_from([("RUST_LOG".into(), "debug".into())]),
            None
        );
    }
}
