//! The resource model: one row per thing a customer paid for, with the state it should be in
//! (`desired`) and the state it is observed in (`status`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Defines a closed string enum whose wire spelling is the snake_case text in the table,
/// with `as_str` and a fallible `parse` that names what it could not read.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Result<Self, $crate::resource::UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::resource::UnknownValue { kind: stringify!($name), value: other.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A stored value that is not one of an enum's spellings (a newer schema, a hand edit).
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} value {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

pub(crate) use wire_enum;

wire_enum! {
    /// What a resource is.
    ResourceKind { HostingNode => "hosting_node", VpnUser => "vpn_user" }
}

wire_enum! {
    /// The observed lifecycle status.
    Status {
        Pending => "pending",
        Creating => "creating",
        Active => "active",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
    }
}

wire_enum! {
    /// The state the reconciler drives a resource toward.
    Desired { Active => "active", Deleted => "deleted" }
}

wire_enum! {
    /// Why a resource is being deleted: the `reason` token the subscription service reads.
    DeleteReason {
        UserInitiated => "user_initiated",
        SubscriptionCancelled => "subscription_cancelled",
        SubscriptionExpired => "subscription_expired",
        ProvisionFailed => "provision_failed",
        Admin => "admin",
    }
}

wire_enum! {
    /// The `status` of a callback to the subscription service.
    CallbackStatus { Active => "active", Failed => "failed", Deleted => "deleted" }
}

wire_enum! {
    /// Entries of a resource's append-only history.
    EventKind {
        ProvisionRequested => "provision_requested",
        VpsCreateRequested => "vps_create_requested",
        NodeAdopted => "node_adopted",
        NodeInstalling => "node_installing",
        NodeFinalizing => "node_finalizing",
        NodeReady => "node_ready",
        AttemptFailed => "attempt_failed",
        Failed => "failed",
        DeleteRequested => "delete_requested",
        Deleting => "deleting",
        UpstreamReleased => "upstream_released",
        Deleted => "deleted",
        OrderRecorded => "order_recorded",
        VpnUserCreated => "vpn_user_created",
        VpnUserUpdated => "vpn_user_updated",
        OrphanDeleted => "orphan_deleted",
        NodeVanished => "node_vanished",
        NodeRecovered => "node_recovered",
        OperatorRetry => "operator_retry",
        MigrationRequested => "migration_requested",
        MigrationVpsRequested => "migration_vps_requested",
        MigrationNodeCreated => "migration_node_created",
        MigrationInstalling => "migration_installing",
        MigrationFinishing => "migration_finishing",
        MigrationSwitched => "migration_switched",
        MigrationFailed => "migration_failed",
        MigrationCancelled => "migration_cancelled",
        MigrationNodeDeleted => "migration_node_deleted",
        RetiredNodeDeleted => "retired_node_deleted",
        Legacy => "legacy",
    }
}

impl Status {
    /// Live resources count against "one per subscription/user"; deleted ones are history.
    pub fn is_live(self) -> bool {
        self != Status::Deleted
    }
}

/// How a customer's app connects to a node. Every field is optional until the hosting
/// service reports it; the hosting service's placeholder values (`""`, `0`) never get here.
/// Serialised with the contract's field names, each omitted until known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_port: Option<i32>,
    /// The node agent's key (its owner receives it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vless_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ss_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_id: Option<String>,
}

impl Connection {
    /// A node is usable once the app can reach it and talk to its agent.
    pub fn is_complete(&self) -> bool {
        self.public_ip.is_some() && self.api_key.is_some()
    }

    /// Fields known here win; unknown ones keep what `older` had.
    pub fn merged_over(self, older: &Connection) -> Connection {
        Connection {
            public_ip: self.public_ip.or_else(|| older.public_ip.clone()),
            api_port: self.api_port.or(older.api_port),
            api_key: self.api_key.or_else(|| older.api_key.clone()),
            vless_port: self.vless_port.or(older.vless_port),
            ss_port: self.ss_port.or(older.ss_port),
            public_key: self.public_key.or_else(|| older.public_key.clone()),
            short_id: self.short_id.or_else(|| older.short_id.clone()),
        }
    }
}

/// One resource as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: Uuid,
    pub kind: ResourceKind,
    pub subscription_id: String,
    pub user_id: String,
    pub user_email: Option<String>,
    /// The order's identity (see `order_key`), for idempotent provisioning.
    pub order_key: String,
    pub provider: String,
    pub region: String,
    pub plan_tier: String,
    pub status: Status,
    pub desired: Desired,
    /// Bumped whenever `desired` changes, so a worker can tell that it acted on old intent.
    pub generation: i64,
    pub delete_reason: Option<DeleteReason>,
    /// The hosting service's id for the node, once known.
    pub node_id: Option<String>,
    /// The furthest creation step reached (1..=4), see `progress`.
    pub phase: super::progress::Phase,
    pub connection: Connection,
    pub traffic_limit: i64,
    /// All the traffic counted for it (a node's reports, a VPN account's sync).
    pub traffic_used: i64,
    /// A hosting node's use in the month of its last report (see `usage`).
    pub tally: Option<super::usage::Tally>,
    pub error_message: Option<String>,
    /// The last failed attempt's error (kept while retrying), for operators.
    pub last_error: Option<String>,
    /// Failed attempts of the current step; reset on progress.
    pub attempts: i32,
    /// True once nothing can exist upstream for this resource any more.
    pub upstream_released: bool,
    /// The claim this copy was read under (each claim takes the next): a worker's write
    /// names it, so a write from a claim that was taken over changes nothing.
    pub lease_epoch: i64,
    /// When the current transitional state must be left by.
    pub deadline_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    /// What the VPN manager must hold for a VPN user (empty for hosting nodes).
    pub vpn: VpnSpec,
    /// The numbered slot of its subscription a live hosting node holds (see `slots`).
    pub slot: Option<i32>,
    /// A replacement VPS being prepared, or a failed attempt still shown.
    pub migration: Option<super::migration::Migration>,
    /// The VPS a switch replaced, deleted until it is gone.
    pub retire_node_id: Option<String>,
    /// The plan an order asked for while the node was coming up (it migrates once active).
    pub plan_wanted: Option<String>,
}

/// The VPN side of a resource: the account at the VPN manager and the terms it must
/// enforce. `spec_version` counts changes to the terms; `applied_version` is the last one
/// the VPN manager confirmed, so `applied_version < spec_version` means work to do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VpnSpec {
    /// The VPN manager's uuid for the user (authoritative: it may differ from ours).
    pub vpn_user_id: Option<String>,
    pub expire_at: Option<DateTime<Utc>>,
    pub service_tier: Option<String>,
    pub spec_version: i64,
    pub applied_version: i64,
    pub traffic_synced_at: Option<DateTime<Utc>>,
    /// The terms' version whose push also sets the usage to 0 (a renewal's, under
    /// `VPN_TRAFFIC_RESET=on_renewal`; 0 for none).
    pub reset_version: i64,
}

impl VpnSpec {
    /// Whether the VPN manager is behind what we recorded.
    pub fn is_pending(&self) -> bool {
        self.applied_version < self.spec_version
    }

    /// Whether the next push of the terms must also set the account's usage to 0: a
    /// renewal's reset the VPN manager has not confirmed yet.
    pub fn owes_reset(&self) -> bool {
        self.reset_version > self.applied_version
    }
}

/// One entry of a resource's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub kind: EventKind,
    /// Who did it: `api`, `engine`, `node`, `user`, `subscription_service`, `admin`.
    pub actor: String,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

/// An order's identity: (`subscription_id`, `channel_tx_id`) when the transaction id is
/// known, else (`subscription_id`, period), else the subscription alone.
pub fn order_key(
    subscription_id: &str,
    channel_tx_id: Option<&str>,
    period: Option<(&str, &str)>,
) -> String {
    match (channel_tx_id.filter(|s| !s.is_empty()), period) {
        (Some(tx), _) => format!("{subscription_id}|tx|{tx}"),
        (None, Some((start, end))) => format!("{subscription_id}|period|{start}|{end}"),
        (None, None) => format!("{subscription_id}|sub"),
    }
}

#[cfg(test)]
impl Resource {
    /// A resource for unit tests, made at `at`, with everything optional left empty.
    pub(crate) fn fixture(
        kind: ResourceKind,
        status: Status,
        desired: Desired,
        at: DateTime<Utc>,
    ) -> Resource {
        Resource {
            id: Uuid::nil(),
            kind,
            subscription_id: "sub".into(),
            user_id: "u".into(),
            user_email: None,
            order_key: "sub|sub".into(),
            provider: "lightsail".into(),
            region: "us-east-1".into(),
            plan_tier: "premium".into(),
            status,
            desired,
            generation: 0,
            delete_reason: None,
            node_id: None,
            phase: super::progress::Phase::Ordered,
            connection: Connection::default(),
            traffic_limit: 0,
            traffic_used: 0,
            tally: None,
            error_message: None,
            last_error: None,
            attempts: 0,
            upstream_released: false,
            lease_epoch: 0,
            deadline_at: None,
            next_attempt_at: None,
            created_at: at,
            updated_at: at,
            ready_at: None,
            vpn: VpnSpec::default(),
            slot: None,
            migration: None,
            retire_node_id: None,
            plan_wanted: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enum_round_trips_through_its_wire_spelling() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()).unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for r in DeleteReason::ALL {
            assert_eq!(DeleteReason::parse(r.as_str()).unwrap(), *r);
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()).unwrap(), *k);
        }
        assert!(Status::parse("creatin").is_err());
    }

    #[test]
    fn order_key_prefers_the_transaction_then_the_period() {
        assert_eq!(order_key("s", Some("t"), Some(("a", "b"))), "s|tx|t");
        assert_eq!(order_key("s", Some(""), Some(("a", "b"))), "s|period|a|b");
        assert_eq!(order_key("s", None, None), "s|sub");
    }

    #[test]
    fn a_connection_merge_keeps_known_fields() {
        let old = Connection {
            public_ip: Some("1.2.3.4".into()),
            api_port: Some(8080),
            ..Default::default()
        };
        let new = Connection {
            api_key: Some("k".into()),
            ..Default::default()
        };
        let merged = new.merged_over(&old);
        assert_eq!(merged.public_ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(merged.api_key.as_deref(), Some("k"));
        assert!(merged.is_complete());
    }
}
