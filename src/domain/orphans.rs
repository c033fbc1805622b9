//! The orphan sweep's rules: which listed node is ours to judge, and when our own record
//! says it is not wanted. This is the riskiest rule in the service (a wrong "yes" deletes
//! a customer's server), so every branch answers "leave it" unless it is sure.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::callback::HOSTING_APP;
use super::{Resource, Status};

/// A node as the hosting service lists it, as far as the sweep looks.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    pub node_id: &'a str,
    pub purpose: Option<&'a str>,
    pub status: &'a str,
    pub resource_id: Option<&'a str>,
    pub created_at: Option<DateTime<Utc>>,
}

/// What the listing alone says about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not one of ours by the hosting service's word (another purpose, or gone already).
    NotOurs,
    /// Ours by purpose, but without a resource id of ours to judge it by.
    Unattributed,
    /// Made within the grace period (or at an unknown time): it may not be linked yet.
    TooYoung,
    /// Ours by purpose and by correlation: our record of this resource decides.
    Judge(Uuid),
}

/// Reads a listed node: only `purpose=obox` nodes that carry one of our resource ids and
/// are older than `grace` are judged at all.
pub fn standing(node: &Listed<'_>, now: DateTime<Utc>, grace: Duration) -> Standing {
    if node.purpose != Some(HOSTING_APP) || node.status == "deleted" {
        return Standing::NotOurs;
    }
    let Some(id) = node.resource_id.and_then(|id| Uuid::parse_str(id).ok()) else {
        return Standing::Unattributed;
    };
    if node.created_at.is_none_or(|at| now - at < grace) {
        return Standing::TooYoung;
    }
    Standing::Judge(id)
}

/// Whether the node is unwanted by the resource it names (`owner`): the resource is
/// deleted, or failed and already cleaned up, or holds a different node (the node is a
/// duplicate). `holder` is the resource our records put this node on, if any: a node
/// another resource holds is never unwanted.
pub fn unwanted(owner: &Resource, node_id: &str, holder: Option<Uuid>) -> bool {
    if holder.is_some_and(|h| h != owner.id) {
        return false;
    }
    match owner.status {
        Status::Deleted => true,
        Status::Failed => owner.upstream_released,
        // A node being replaced holds two VPSes: the one that serves and the one being
        // prepared; the retired one after a switch is unwanted.
        _ if super::migration::wants_node(owner, node_id) => false,
        _ => owner.node_id.as_deref().is_some_and(|mine| mine != node_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Desired, ResourceKind};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    const RID: &str = "0190a0e0-0000-7000-8000-000000000001";

    fn listed(
        purpose: Option<&'static str>,
        rid: Option<&'static str>,
        age_min: i64,
    ) -> Listed<'static> {
        Listed {
            node_id: "n-1",
            purpose,
            status: "active",
            resource_id: rid,
            created_at: Some(now() - Duration::minutes(age_min)),
        }
    }

    #[test]
    fn only_old_enough_obox_nodes_with_our_id_are_judged() {
        let grace = Duration::minutes(30);
        let id = Uuid::parse_str(RID).unwrap();
        assert_eq!(
            standing(&listed(Some("obox"), Some(RID), 31), now(), grace),
            Standing::Judge(id)
        );
        assert_eq!(
            standing(&listed(Some("otun"), Some(RID), 99), now(), grace),
            Standing::NotOurs
        );
        assert_eq!(
            standing(&listed(None, Some(RID), 99), now(), grace),
            Standing::NotOurs
        );
        assert_eq!(
            standing(&listed(Some("obox"), None, 99), now(), grace),
            Standing::Unattributed
        );
        assert_eq!(
            standing(&listed(Some("obox"), Some("not-a-uuid"), 99), now(), grace),
            Standing::Unattributed
        );
        assert_eq!(
            standing(&listed(Some("obox"), Some(RID), 29), now(), grace),
            Standing::TooYoung
        );
        let unknown_age = Listed {
            created_at: None,
            ..listed(Some("obox"), Some(RID), 99)
        };
        assert_eq!(standing(&unknown_age, now(), grace), Standing::TooYoung);
        let gone = Listed {
            status: "deleted",
            ..listed(Some("obox"), Some(RID), 99)
        };
        assert_eq!(standing(&gone, now(), grace), Standing::NotOurs);
    }

    fn owner(status: Status, node: Option<&str>, released: bool) -> Resource {
        let mut r = Resource::fixture(ResourceKind::HostingNode, status, Desired::Active, now());
        r.node_id = node.map(Into::into);
        r.upstream_released = released;
        r
    }

    #[test]
    fn a_node_is_unwanted_only_when_our_record_says_so() {
        assert!(unwanted(
            &owner(Status::Deleted, Some("n-1"), true),
            "n-1",
            None
        ));
        assert!(unwanted(
            &owner(Status::Failed, Some("n-1"), true),
            "n-1",
            None
        ));
        assert!(
            !unwanted(&owner(Status::Failed, Some("n-1"), false), "n-1", None),
            "cleanup pending"
        );
        assert!(
            unwanted(&owner(Status::Active, Some("n-2"), false), "n-1", None),
            "a duplicate"
        );
        for status in [
            Status::Pending,
            Status::Creating,
            Status::Active,
            Status::Deleting,
        ] {
            assert!(
                !unwanted(&owner(status, Some("n-1"), false), "n-1", None),
                "{status}"
            );
            assert!(
                !unwanted(&owner(status, None, false), "n-1", None),
                "{status} without a node id"
            );
        }
    }

    #[test]
    fn a_node_another_resource_holds_is_never_unwanted() {
        let deleted = owner(Status::Deleted, Some("n-1"), true);
        assert!(!unwanted(&deleted, "n-1", Some(Uuid::from_u128(99))));
        assert!(unwanted(&deleted, "n-1", Some(deleted.id)));
    }

    #[test]
    fn the_vps_a_migration_prepares_is_wanted_and_the_retired_one_is_not() {
        use crate::domain::migration::{Migration, MigrationStatus};
        let mut r = owner(Status::Active, Some("n-old"), false);
        r.migration = Some(Migration {
            status: MigrationStatus::Creating,
            to_region: "eu-west-1".into(),
            to_plan_tier: "premium".into(),
            node_id: None,
            token_hash: None,
            started_at: now(),
            deadline_at: now(),
            error_message: None,
            actor: "user".into(),
        });
        assert!(!unwanted(&r, "n-new", None), "its id is not known yet");
        r.migration.as_mut().unwrap().node_id = Some("n-new".into());
        assert!(!unwanted(&r, "n-new", None));
        assert!(unwanted(&r, "n-third", None), "a duplicate of the new VPS");
        assert!(!unwanted(&r, "n-old", None));
        // After the switch the old VPS is retired: unwanted.
        r.migration = None;
        r.node_id = Some("n-new".into());
        r.retire_node_id = Some("n-old".into());
        assert!(unwanted(&r, "n-old", None));
    }
}
