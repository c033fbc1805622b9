//! Whose node is it? A listed node that carries no resource id of ours (the hosting
//! service may not echo it) but our subscription and user, and that no resource records,
//! may be any of the subscription's nodes (several, since a subscription pays for N). A
//! wrong "ours" adopts a sibling's VPS (two resources on one server, one leaked), so this
//! answers "unsure" unless it can tell.

use super::{Resource, ResourceKind, Status};

/// The verdict on one listed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    Ours,
    NotOurs,
    /// Another node of the subscription may have made it: ask again later.
    Unsure,
}

/// Whether `r` is preparing a migration's new VPS without knowing its id (its create may
/// have been made).
pub fn migrating_blind(r: &Resource) -> bool {
    r.status == Status::Active
        && r.migration.as_ref().is_some_and(|m| {
            m.node_id.is_none() && m.token_hash.is_some() && m.status.is_preparing()
        })
}

/// Whether `s` may have made a VPS it does not know the id of, one whose address is
/// `node_ip` (if the listing gives it).
fn may_have_made(s: &Resource, node_ip: Option<&str>) -> bool {
    if s.kind != ResourceKind::HostingNode {
        return false;
    }
    let own_vps_unknown = s.node_id.is_none()
        && !matches!(s.status, Status::Pending | Status::Deleted)
        && !s.upstream_released;
    // A sibling whose VPS's address we know made a node at that address only.
    let address_fits = match (s.connection.public_ip.as_deref(), node_ip) {
        (Some(mine), Some(listed)) => mine == listed,
        _ => true,
    };
    (own_vps_unknown && address_fits) || migrating_blind(s)
}

/// Whether a listed node (at `node_ip`, if known) that carries no resource id and that no
/// resource records is `r`'s, given the other resources of its subscription.
pub fn attribute(r: &Resource, node_ip: Option<&str>, siblings: &[Resource]) -> Attribution {
    let others = || siblings.iter().filter(|s| s.id != r.id);
    if let Some(ip) = node_ip {
        if r.connection.public_ip.as_deref() == Some(ip) {
            return Attribution::Ours;
        }
        if others().any(|s| s.connection.public_ip.as_deref() == Some(ip)) {
            return Attribution::NotOurs;
        }
        // Our VPS is at another address; unless we are preparing a new one, not ours.
        if r.connection.public_ip.is_some() && !migrating_blind(r) {
            return Attribution::NotOurs;
        }
    }
    if others().any(|s| may_have_made(s, node_ip)) {
        Attribution::Unsure
    } else {
        Attribution::Ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Desired;
    use crate::migration::{Migration, MigrationStatus};
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn node(n: u128, status: Status, node_id: Option<&str>, ip: Option<&str>) -> Resource {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let mut r = Resource::fixture(ResourceKind::HostingNode, status, Desired::Active, at);
        r.id = Uuid::from_u128(n);
        r.node_id = node_id.map(Into::into);
        r.connection.public_ip = ip.map(Into::into);
        r
    }

    fn blind(mut r: Resource) -> Resource {
        let at = r.created_at;
        r.migration = Some(Migration {
            status: MigrationStatus::Creating,
            to_region: "eu-west-1".into(),
            to_plan_tier: "basic".into(),
            node_id: None,
            token_hash: Some("h".into()),
            started_at: at,
            deadline_at: at,
            error_message: None,
            actor: "user".into(),
        });
        r
    }

    #[test]
    fn alone_in_its_subscription_a_node_is_ours() {
        let r = node(1, Status::Creating, None, None);
        assert_eq!(
            attribute(&r, None, std::slice::from_ref(&r)),
            Attribution::Ours
        );
        assert_eq!(
            attribute(&r, Some("1.1.1.1"), std::slice::from_ref(&r)),
            Attribution::Ours
        );
    }

    #[test]
    fn an_address_tells_nodes_apart() {
        // The sibling's agent reported its address before its id was learned.
        let r = node(1, Status::Creating, None, None);
        let y = node(2, Status::Active, None, Some("2.2.2.2"));
        let all = [r.clone(), y.clone()];
        assert_eq!(attribute(&r, Some("2.2.2.2"), &all), Attribution::NotOurs);
        assert_eq!(attribute(&y, Some("2.2.2.2"), &all), Attribution::Ours);
        // Another address: not y's, and r is the only one that may have made it.
        assert_eq!(attribute(&r, Some("3.3.3.3"), &all), Attribution::Ours);
        assert_eq!(attribute(&y, Some("3.3.3.3"), &all), Attribution::NotOurs);
        // Without an address in the listing, y may have made it.
        assert_eq!(attribute(&r, None, &all), Attribution::Unsure);
    }

    #[test]
    fn two_siblings_that_know_neither_id_nor_address_are_unsure_of_each_other() {
        let a = node(1, Status::Creating, None, None);
        let b = node(2, Status::Creating, None, None);
        let all = [a.clone(), b.clone()];
        assert_eq!(attribute(&a, Some("9.9.9.9"), &all), Attribution::Unsure);
        assert_eq!(attribute(&b, None, &all), Attribution::Unsure);
    }

    #[test]
    fn siblings_that_know_their_vps_or_never_made_one_are_no_makers() {
        let r = node(1, Status::Creating, None, None);
        for s in [
            node(2, Status::Active, Some("n-2"), Some("2.2.2.2")),
            node(3, Status::Pending, None, None),
            node(4, Status::Deleted, None, None),
            {
                let mut f = node(5, Status::Failed, None, None);
                f.upstream_released = true;
                f
            },
        ] {
            assert_eq!(
                attribute(&r, Some("9.9.9.9"), &[r.clone(), s.clone()]),
                Attribution::Ours,
                "{s:?}"
            );
        }
        // A failed sibling whose VPS may still exist may have made it.
        let failed = node(6, Status::Failed, None, None);
        assert_eq!(
            attribute(&r, None, &[r.clone(), failed]),
            Attribution::Unsure
        );
    }

    #[test]
    fn a_migration_without_its_new_vps_id_may_have_made_any_node() {
        let r = node(1, Status::Creating, None, None);
        let m = blind(node(2, Status::Active, Some("n-2"), Some("2.2.2.2")));
        assert_eq!(
            attribute(&r, Some("9.9.9.9"), &[r.clone(), m.clone()]),
            Attribution::Unsure
        );
        // The migrating node itself: its new VPS has another address than its current one.
        assert_eq!(
            attribute(&m, Some("9.9.9.9"), std::slice::from_ref(&m)),
            Attribution::Ours
        );
        // Not migrating, a node at another address than ours is not ours.
        let settled = node(2, Status::Active, Some("n-2"), Some("2.2.2.2"));
        assert_eq!(
            attribute(&settled, Some("9.9.9.9"), std::slice::from_ref(&settled)),
            Attribution::NotOurs
        );
    }
}
