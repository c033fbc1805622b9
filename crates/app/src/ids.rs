//! Ids as they enter the use cases: parsed once, at the edge, into types that can only
//! hold a valid value. A user or subscription id is an opaque string of 1 to 256
//! characters without control characters (`domain::input::id`); a resource id is a UUID,
//! and one that is not reads as "not found".

use std::fmt;

use uuid::Uuid;

use super::AppError;
use domain::input;

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $missing:literal, $too_long:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, AppError> {
                input::id(value, $field, $missing, $too_long)?;
                Ok($name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(
    /// A user, as the identity provider names them.
    UserId,
    "user_id",
    "missing_user_id",
    "user_id_too_long"
);

opaque_id!(
    /// A subscription, as the subscription service names it.
    SubscriptionId,
    "subscription_id",
    "missing_subscription_id",
    "subscription_id_too_long"
);

/// One of our resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceId(pub Uuid);

impl ResourceId {
    pub fn parse(value: &str) -> Result<Self, AppError> {
        Uuid::parse_str(value)
            .map(ResourceId)
            .map_err(|_| AppError::not_found("resource_not_found", "resource not found"))
    }
}

/// An optional short field of an order (a channel, a device id), trimmed; empty is none.
pub fn optional_field(value: Option<&str>, name: &str) -> Result<Option<String>, AppError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            input::id(v, name, "invalid_field", "field_too_long")?;
            Ok(Some(v.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: AppError) -> &'static str {
        match e {
            AppError::Invalid { code, .. } | AppError::NotFound { code, .. } => code,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ids_parse_or_say_which_rule_they_broke() {
        assert_eq!(UserId::parse("u-1").unwrap().as_str(), "u-1");
        assert_eq!(code(UserId::parse("  ").unwrap_err()), "missing_user_id");
        assert_eq!(
            code(UserId::parse(&"x".repeat(257)).unwrap_err()),
            "user_id_too_long"
        );
        assert_eq!(
            code(SubscriptionId::parse("").unwrap_err()),
            "missing_subscription_id"
        );
        assert_eq!(
            code(ResourceId::parse("nope").unwrap_err()),
            "resource_not_found"
        );
        let id = Uuid::now_v7();
        assert_eq!(ResourceId::parse(&id.to_string()).unwrap(), ResourceId(id));
    }

    #[test]
    fn an_optional_field_is_trimmed_and_empty_is_none() {
        assert_eq!(
            optional_field(Some("  apple "), "channel")
                .unwrap()
                .as_deref(),
            Some("apple")
        );
        assert_eq!(optional_field(Some("   "), "channel").unwrap(), None);
        assert_eq!(optional_field(None, "channel").unwrap(), None);
        assert_eq!(
            code(optional_field(Some(&"x".repeat(300)), "channel").unwrap_err()),
            "field_too_long"
        );
    }
}
