//! How the domain's closed string enums appear in the API's document: each from its own
//! `ALL` list, so a value added to an enum is described by the same change.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::entitlement::VpnStatus;
use super::migration::ShownMigration;
use super::progress::HostingStatus;
use super::{EventKind, ResourceKind, Status};

/// A closed string enum: these values, as they serialise.
pub fn wire_values<T: Serialize>(all: &[T]) -> RefOr<Schema> {
    let values = all
        .iter()
        .map(|v| serde_json::to_value(v).expect("a wire enum serialises"));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

macro_rules! wire_schema {
    ($($ty:ty),+ $(,)?) => {$(
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                wire_values(&<$ty>::ALL)
            }
        }
        impl ToSchema for $ty {}
    )+};
}

wire_schema!(HostingStatus, Status, VpnStatus, EventKind, ResourceKind);

/// A migration's status as the apps see it, under the name the document always gave it.
impl PartialSchema for ShownMigration {
    fn schema() -> RefOr<Schema> {
        wire_values(ShownMigration::ALL)
    }
}

impl ToSchema for ShownMigration {
    fn name() -> Cow<'static, str> {
        "MigrationStatus".into()
    }
}
