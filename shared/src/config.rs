//! Reading configuration from the environment, once, at cold start. A missing or malformed value
//! stops the function with a message naming the variable.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required but not set")]
    Missing { name: &'static str },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A snapshot of environment variables. Built from the process at start, or from pairs in tests, so
/// configuration parsing is tested without touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_owned(), value.into());
    }

    /// Sets `name` unless it already has a non-blank value.
    pub fn set_default(&mut self, name: &str, value: impl Into<String>) {
        if self.optional(name).is_none() {
            self.vars.insert(name.to_owned(), value.into());
        }
    }

    /// A set, non-blank value.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing { name })
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or(default).to_owned()
    }

    pub fn positive_u64(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(value) if value > 0 => Ok(value),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("expected a whole number above 0, got {raw:?}"),
            }),
        }
    }

    pub fn positive_secs(&self, name: &'static str, default: i64) -> Result<i64, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        match raw.parse::<i64>() {
            Ok(secs) if secs > 0 => Ok(secs),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("expected a whole number of seconds above 0, got {raw:?}"),
            }),
        }
    }
}

/// A required `http://` or `https://` base URL, without its trailing slash.
pub fn http_url(env: &Env, name: &'static str) -> Result<String, ConfigError> {
    let raw = env.required(name)?;
    let has_host = raw.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/')
    });
    if !has_host || raw.contains(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("expected an http:// or https:// URL, got {raw:?}"),
        });
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LockPolicy;

    #[test]
    fn policy_defaults_apply_when_unset_or_blank() {
        let env = Env::from_pairs([("SESSION_LOCK_SECS", "  ")]);
        assert_eq!(LockPolicy::from_env(&env), Ok(LockPolicy::default()));
        assert_eq!(LockPolicy::default().lock_secs, 86_400);
    }

    #[test]
    fn policy_reads_every_variable() {
        let env = Env::from_pairs([
            ("SESSION_LOCK_SECS", "3600"),
            ("LOCK_REFRESH_SECS", "60"),
            ("CLAIM_LEASE_SECS", "20"),
            ("PRECHAT_WINDOW_SECS", "600"),
        ]);
        assert_eq!(
            LockPolicy::from_env(&env),
            Ok(LockPolicy {
                lock_secs: 3600,
                touch_interval_secs: 60,
                claim_lease_secs: 20,
                prechat_window_secs: 600,
            })
        );
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for bad in ["abc", "0", "-5", "1.5"] {
            let env = Env::from_pairs([("SESSION_LOCK_SECS", bad)]);
            let err = LockPolicy::from_env(&env).unwrap_err();
            assert!(
                err.to_string().starts_with("SESSION_LOCK_SECS is invalid"),
                "{err}"
            );
        }
        let env = Env::from_pairs([("SESSION_LOCK_SECS", "100"), ("LOCK_REFRESH_SECS", "100")]);
        let err = LockPolicy::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("LOCK_REFRESH_SECS"), "{err}");
    }

    #[test]
    fn urls_must_be_http_and_lose_their_trailing_slash() {
        let env = Env::from_pairs([
            ("GOOD", "https://caic.example/api/"),
            ("BAD", "caic.example"),
            ("EMPTY_HOST", "http:///x"),
        ]);
        assert_eq!(
            http_url(&env, "GOOD").as_deref(),
            Ok("https://caic.example/api")
        );
        assert!(matches!(
            http_url(&env, "BAD"),
            Err(ConfigError::Invalid { name: "BAD", .. })
        ));
        assert!(http_url(&env, "EMPTY_HOST").is_err());
        assert_eq!(
            http_url(&env, "MISSING"),
            Err(ConfigError::Missing { name: "MISSING" })
        );
    }

    #[test]
    fn required_values_are_reported_missing_by_name() {
        let env = Env::from_pairs([("CAIC_BASE_URL", "")]);
        assert_eq!(
            env.required("CAIC_BASE_URL"),
            Err(ConfigError::Missing {
                name: "CAIC_BASE_URL"
            })
        );
    }
}
