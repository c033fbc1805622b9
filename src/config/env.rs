//! Reading variables: each reader parses one variable, range-checks it, and records a
//! message naming the variable when it is wrong (so startup can list every mistake at
//! once), falling back to the default.

use std::time::Duration;

use reqwest::Url;

pub const HOUR: f64 = 3600.0;
pub const DAY: f64 = 24.0 * HOUR;
pub const WEEK: f64 = 7.0 * DAY;

/// The variables, and the mistakes found so far.
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub errors: Vec<String>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env {
            lookup,
            errors: Vec::new(),
        }
    }

    /// A variable, trimmed; empty counts as unset.
    pub fn get(&self, k: &str) -> Option<String> {
        (self.lookup)(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A variable as set, trimmed, empty included (where empty means "off").
    pub fn get_or_empty(&self, k: &str) -> Option<String> {
        (self.lookup)(k).map(|v| v.trim().to_owned())
    }

    /// The first of two names that is set (a variable and its alias).
    pub fn either(&self, a: &str, b: &str) -> Option<String> {
        self.get(a).or_else(|| self.get(b))
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// Seconds (fractions allowed) within `min..=max`. Every duration is checked here, so
    /// nothing later (time arithmetic, timers) can meet an absurd one.
    pub fn secs(&mut self, k: &str, default: Duration, (min, max): (f64, f64)) -> Duration {
        match self.get(k).map(|v| v.parse::<f64>()) {
            None => default,
            Some(Ok(v)) if v.is_finite() && (min..=max).contains(&v) => Duration::from_secs_f64(v),
            Some(_) => {
                self.error(format!(
                    "{k} must be a number of seconds from {min} to {max}"
                ));
                default
            }
        }
    }

    /// Hours from 0 to ten years.
    pub fn hours(&mut self, k: &str, default: Duration) -> Duration {
        match self.get(k).map(|v| v.parse::<f64>()) {
            None => default,
            Some(Ok(v)) if v.is_finite() && (0.0..=24.0 * 3650.0).contains(&v) => {
                Duration::from_secs_f64(v * HOUR)
            }
            Some(_) => {
                self.error(format!("{k} must be a number of hours from 0 to 87600"));
                default
            }
        }
    }

    /// A whole number from 1 to `max`.
    pub fn count(&mut self, k: &str, default: u32, max: u32) -> u32 {
        match self.get(k).map(|v| v.parse::<u32>()) {
            None => default,
            Some(Ok(v)) if (1..=max).contains(&v) => v,
            Some(_) => {
                self.error(format!("{k} must be a whole number from 1 to {max}"));
                default
            }
        }
    }

    /// A whole number from 0 to `max`.
    pub fn amount(&mut self, k: &str, default: usize, max: usize) -> usize {
        match self.get(k).map(|v| v.parse::<usize>()) {
            None => default,
            Some(Ok(v)) if v <= max => v,
            Some(_) => {
                self.error(format!("{k} must be a whole number from 0 to {max}"));
                default
            }
        }
    }

    pub fn port(&mut self, k: &str, default: u16) -> u16 {
        match self.get(k).map(|v| v.parse::<u16>()) {
            None => default,
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                self.error(format!("{k} must be a port number"));
                default
            }
        }
    }

    /// One of a closed set of names (`names` pairs each with its value).
    pub fn choice<T: Copy>(&mut self, k: &str, names: &[(&str, T)], default: T) -> T {
        let Some(v) = self.get(k) else {
            return default;
        };
        match names.iter().find(|(name, _)| *name == v) {
            Some((_, value)) => *value,
            None => {
                let all: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
                self.error(format!("{k} must be one of {}, got {v:?}", all.join(", ")));
                default
            }
        }
    }

    pub fn flag(&mut self, k: &str) -> bool {
        match self.get(k).as_deref() {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(_) => {
                self.error(format!("{k} must be true or false"));
                false
            }
        }
    }

    pub fn url(&mut self, k: &str) -> Option<Url> {
        let v = self.get(k)?;
        match Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                self.error(format!("{k} must be an http(s) URL, got {v:?}"));
                None
            }
        }
    }
}
