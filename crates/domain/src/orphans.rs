//! The orphan sweep's rules: which listed node is ours to judge, when our own record says
//! it is not wanted, and what to make of the two ways a database that went back in time
//! (a restored backup, a replica that lost the last seconds) disagrees with the world: a
//! VPS carrying a resource id we do not know, and a live resource whose VPS is gone. This
//! is the riskiest rule in the service (a wrong "yes" deletes a customer's server), so
//! every branch answers "leave it" unless it is sure.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::product::HOSTING;
use super::progress::SubscriptionSnapshot;
use super::{Desired, Resource, Status};

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
    /// Ours by purpose and old enough, but without a resource id of ours: only a VPS a
    /// row imported from the Go service named is judged, by its node id (`leaked`).
    ByNodeId,
    /// Made within the grace period (or at an unknown time): it may not be linked yet.
    TooYoung,
    /// Ours by purpose and by correlation: our record of this resource decides.
    Judge(Uuid),
}

/// Reads a listed node: only `purpose=obox` nodes older than `grace` are judged at all, by
/// the resource id of ours they carry, else by their node id.
pub fn standing(node: &Listed<'_>, now: DateTime<Utc>, grace: Duration) -> Standing {
    if node.purpose != Some(HOSTING.app) || node.status == "deleted" {
        return Standing::NotOurs;
    }
    if node.created_at.is_none_or(|at| now - at < grace) {
        return Standing::TooYoung;
    }
    match node.resource_id.and_then(|id| Uuid::parse_str(id).ok()) {
        Some(id) => Standing::Judge(id),
        None => Standing::ByNodeId,
    }
}

/// A resource that names a node (as its VPS, a migration's, or a retired one), and
/// whether it was imported from the Go service.
#[derive(Debug, Clone)]
pub struct Claim {
    pub resource: Resource,
    pub imported: bool,
}

/// Whether a VPS without our correlation id is one the Go service leaked (CONTRACTS.md
/// §5.2): a resource imported `failed` or `deleted` names it, and no resource naming it
/// wants it. Answers the imported resource to record the deletion on.
pub fn leaked(node_id: &str, claims: &[Claim], listed: impl Fn(&str) -> bool) -> Option<Uuid> {
    let wanted = claims
        .iter()
        .any(|c| !unwanted(&c.resource, node_id, Some(c.resource.id), &listed));
    if wanted {
        return None;
    }
    claims
        .iter()
        .find(|c| c.imported && matches!(c.resource.status, Status::Failed | Status::Deleted))
        .map(|c| c.resource.id)
}

/// Whether the node is unwanted by the resource it names (`owner`): the resource is
/// deleted, or failed and already cleaned up, or holds a different node that the hosting
/// service lists alive (the node is a duplicate). `holder` is the resource our records put
/// this node on, if any: a node another resource holds is never unwanted. `listed` tells
/// whether the hosting service lists a node alive: when the node our record names is gone,
/// this one may be its successor that our record missed (a restored database), and the
/// engine relinks it instead (`serving_unlisted`).
pub fn unwanted(
    owner: &Resource,
    node_id: &str,
    holder: Option<Uuid>,
    listed: impl Fn(&str) -> bool,
) -> bool {
    if holder.is_some_and(|h| h != owner.id) {
        return false;
    }
    match owner.status {
        Status::Deleted => true,
        Status::Failed => owner.upstream_released,
        // A node being replaced holds two VPSes: the one that serves and the one being
        // prepared; the retired one after a switch is unwanted.
        _ if super::migration::wants_node(owner, node_id) => false,
        _ => owner
            .node_id
            .as_deref()
            .is_some_and(|mine| mine != node_id && listed(mine)),
    }
}

/// Whether a live node's VPS is missing from the hosting service's listing, so that the
/// engine should look at it (`Engine::confirm_node`): active and meant to be, serving
/// from a VPS that is not listed alive, not in the middle of replacing it, and ready for
/// longer than `grace` (a listing taken a moment ago may predate it).
pub fn serving_unlisted(
    r: &Resource,
    listed: impl Fn(&str) -> bool,
    now: DateTime<Utc>,
    grace: Duration,
) -> bool {
    let settled = r.status == Status::Active
        && r.desired == Desired::Active
        && r.migration.is_none()
        && r.retire_node_id.is_none();
    let old_enough = r.ready_at.is_some_and(|at| now - at >= grace);
    settled && old_enough && r.node_id.as_deref().is_some_and(|n| !listed(n))
}

/// What to do with a VPS that carries a resource id of ours that our database does not
/// know (it went back in time: the order came after the backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The subscription service confirms the subscription the VPS names is active for the
    /// user it names: record the resource again, on this VPS, with the subscription's plan,
    /// in one of the `slots` it pays for.
    Adopt { plan_tier: String, slots: u32 },
    /// Not confirmed (no active subscription, or another one): left alone and reported. It
    /// may belong to another deployment that shares the hosting account.
    Unconfirmed,
}

/// Decides about a VPS with an unknown resource id of ours from the subscription it names
/// and the user's active subscription as the subscription service reports it.
pub fn recovery(named: &str, active: Option<&SubscriptionSnapshot>) -> Recovery {
    match active {
        Some(s) if s.subscription_id == named && s.status == "active" => Recovery::Adopt {
            plan_tier: s.plan_tier.clone(),
            slots: s.quantity.unwrap_or(1).clamp(1, i64::from(u32::MAX)) as u32,
        },
        _ => Recovery::Unconfirmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Desired, ResourceKind};
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
            Standing::ByNodeId
        );
        assert_eq!(
            standing(&listed(Some("obox"), Some("not-a-uuid"), 99), now(), grace),
            Standing::ByNodeId
        );
        assert_eq!(
            standing(&listed(Some("obox"), None, 29), now(), grace),
            Standing::TooYoung
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

    /// Every node is listed alive.
    fn all(_: &str) -> bool {
        true
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
            None,
            all
        ));
        assert!(unwanted(
            &owner(Status::Failed, Some("n-1"), true),
            "n-1",
            None,
            all
        ));
        assert!(
            !unwanted(&owner(Status::Failed, Some("n-1"), false), "n-1", None, all),
            "cleanup pending"
        );
        assert!(
            unwanted(&owner(Status::Active, Some("n-2"), false), "n-1", None, all),
            "a duplicate"
        );
        assert!(
            !unwanted(
                &owner(Status::Active, Some("n-2"), false),
                "n-1",
                None,
                |n| n != "n-2"
            ),
            "the VPS our record names is gone: this one may be its successor"
        );
        for status in [
            Status::Pending,
            Status::Creating,
            Status::Active,
            Status::Deleting,
        ] {
            assert!(
                !unwanted(&owner(status, Some("n-1"), false), "n-1", None, all),
                "{status}"
            );
            assert!(
                !unwanted(&owner(status, None, false), "n-1", None, all),
                "{status} without a node id"
            );
        }
    }

    fn claim(status: Status, node: Option<&str>, released: bool, imported: bool) -> Claim {
        let mut resource = owner(status, node, released);
        resource.id = Uuid::new_v4();
        Claim { resource, imported }
    }

    #[test]
    fn a_vps_an_imported_failed_or_deleted_row_names_is_leaked_unless_someone_wants_it() {
        let deleted = claim(Status::Deleted, Some("n-1"), true, true);
        assert_eq!(
            leaked("n-1", std::slice::from_ref(&deleted), all),
            Some(deleted.resource.id)
        );
        let failed = claim(Status::Failed, Some("n-1"), true, true);
        assert_eq!(
            leaked("n-1", std::slice::from_ref(&failed), all),
            Some(failed.resource.id)
        );
        // Our own rows are judged by their correlation id, never by node id alone.
        assert_eq!(
            leaked(
                "n-1",
                &[claim(Status::Deleted, Some("n-1"), true, false)],
                all
            ),
            None
        );
        assert_eq!(leaked("n-1", &[], all), None);
        // A failed row whose cleanup is still to come (the engine deletes it).
        assert_eq!(
            leaked(
                "n-1",
                &[claim(Status::Failed, Some("n-1"), false, true)],
                all
            ),
            None
        );
        // An imported active row's VPS serves.
        assert_eq!(
            leaked(
                "n-1",
                &[claim(Status::Active, Some("n-1"), false, true)],
                all
            ),
            None
        );
        // Another resource that holds the same VPS wins.
        for status in [Status::Active, Status::Creating, Status::Deleting] {
            let live = claim(status, Some("n-1"), false, false);
            assert_eq!(
                leaked("n-1", &[deleted.clone(), live], all),
                None,
                "{status}"
            );
        }
    }

    #[test]
    fn a_node_another_resource_holds_is_never_unwanted() {
        let deleted = owner(Status::Deleted, Some("n-1"), true);
        assert!(!unwanted(&deleted, "n-1", Some(Uuid::from_u128(99)), all));
        assert!(unwanted(&deleted, "n-1", Some(deleted.id), all));
    }

    #[test]
    fn the_vps_a_migration_prepares_is_wanted_and_the_retired_one_is_not() {
        use crate::migration::{Migration, MigrationStatus};
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
        assert!(!unwanted(&r, "n-new", None, all), "its id is not known yet");
        r.migration.as_mut().unwrap().node_id = Some("n-new".into());
        assert!(!unwanted(&r, "n-new", None, all));
        assert!(
            unwanted(&r, "n-third", None, all),
            "a duplicate of the new VPS"
        );
        assert!(!unwanted(&r, "n-old", None, all));
        // After the switch the old VPS is retired: unwanted.
        r.migration = None;
        r.node_id = Some("n-new".into());
        r.retire_node_id = Some("n-old".into());
        assert!(unwanted(&r, "n-old", None, all));
    }

    #[test]
    fn a_live_node_is_suspect_when_its_settled_vps_is_not_listed() {
        let grace = Duration::minutes(30);
        let mut r = owner(Status::Active, Some("n-1"), false);
        r.ready_at = Some(now() - Duration::hours(2));
        let gone = |n: &str| n != "n-1";
        assert!(serving_unlisted(&r, gone, now(), grace));
        assert!(!serving_unlisted(&r, all, now(), grace), "listed alive");
        let young = Resource {
            ready_at: Some(now() - Duration::minutes(5)),
            ..r.clone()
        };
        assert!(
            !serving_unlisted(&young, gone, now(), grace),
            "ready a moment ago"
        );
        let never_ready = Resource {
            ready_at: None,
            ..r.clone()
        };
        assert!(!serving_unlisted(&never_ready, gone, now(), grace));
        let retiring = Resource {
            retire_node_id: Some("n-0".into()),
            ..r.clone()
        };
        assert!(
            !serving_unlisted(&retiring, gone, now(), grace),
            "a switch is being finished"
        );
        let leaving = Resource {
            desired: Desired::Deleted,
            ..r.clone()
        };
        assert!(!serving_unlisted(&leaving, gone, now(), grace));
        for status in [
            Status::Creating,
            Status::Deleting,
            Status::Failed,
            Status::Deleted,
        ] {
            let other = Resource {
                status,
                ..r.clone()
            };
            assert!(!serving_unlisted(&other, gone, now(), grace), "{status}");
        }
        let no_node = Resource {
            node_id: None,
            ..r.clone()
        };
        assert!(!serving_unlisted(&no_node, gone, now(), grace));
    }

    fn active(subscription: &str, quantity: Option<i64>) -> SubscriptionSnapshot {
        SubscriptionSnapshot {
            subscription_id: subscription.into(),
            status: "active".into(),
            plan_tier: "premium".into(),
            expires_at: None,
            auto_renew: true,
            quantity,
        }
    }

    #[test]
    fn an_unknown_vps_is_adopted_only_for_the_active_subscription_it_names() {
        assert_eq!(
            recovery("sub-1", Some(&active("sub-1", None))),
            Recovery::Adopt {
                plan_tier: "premium".into(),
                slots: 1
            }
        );
        assert_eq!(
            recovery("sub-1", Some(&active("sub-1", Some(3)))),
            Recovery::Adopt {
                plan_tier: "premium".into(),
                slots: 3
            }
        );
        assert_eq!(
            recovery("sub-1", Some(&active("sub-1", Some(0)))),
            Recovery::Adopt {
                plan_tier: "premium".into(),
                slots: 1
            },
            "a nonsense quantity still pays for the node"
        );
        assert_eq!(
            recovery("sub-1", Some(&active("sub-2", None))),
            Recovery::Unconfirmed,
            "the user's active subscription is another one"
        );
        assert_eq!(recovery("sub-1", None), Recovery::Unconfirmed);
        let lapsed = SubscriptionSnapshot {
            status: "expired".into(),
            ..active("sub-1", None)
        };
        assert_eq!(recovery("sub-1", Some(&lapsed)), Recovery::Unconfirmed);
    }
}
