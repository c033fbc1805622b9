//! The read models the apps decode strictly: `hosting_status` (a closed enum) and
//! `creation_progress` (four steps that follow the real lifecycle, with timestamps taken
//! from the resource's event log).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Desired, Event, EventKind, Resource, Status};

/// A subscription as the subscription service last described it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SubscriptionSnapshot {
    pub subscription_id: String,
    pub status: String,
    pub plan_tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub auto_renew: bool,
    /// How many nodes the subscription pays for, when the subscription service says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
}

/// What we know about a user's subscription right now.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionState {
    /// Active, from the subscription service or (while it is down) from the last snapshot.
    Active(SubscriptionSnapshot),
    /// No active subscription; the last one we saw, if any, tells expired from never-had.
    Inactive {
        last_known: Option<SubscriptionSnapshot>,
    },
    /// The subscription service is unreachable and we have never seen this user.
    Unknown,
}

/// `hosting_status`: exactly these six values, never another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostingStatus {
    NoSubscription,
    SubscribedNoNode,
    NodeCreating,
    NodeActive,
    NodeFailed,
    SubscriptionExpired,
}

impl HostingStatus {
    pub const ALL: [HostingStatus; 6] = [
        Self::NoSubscription,
        Self::SubscribedNoNode,
        Self::NodeCreating,
        Self::NodeActive,
        Self::NodeFailed,
        Self::SubscriptionExpired,
    ];
}

/// The node a user sees: their hosting resource unless it is on its way out. A node being
/// deleted reads as no node.
pub fn visible_node(resource: Option<&Resource>) -> Option<&Resource> {
    resource.filter(|r| {
        r.desired == Desired::Active && !matches!(r.status, Status::Deleting | Status::Deleted)
    })
}

/// Derives `hosting_status`. An existing node always shows, whatever the subscription
/// service says (or fails to say). Returns `None` only when nothing at all is known: no node
/// and an unreachable subscription service with no snapshot.
pub fn hosting_status(
    subscription: &SubscriptionState,
    node: Option<&Resource>,
    now: DateTime<Utc>,
) -> Option<HostingStatus> {
    if let Some(node) = visible_node(node) {
        return Some(match node.status {
            Status::Pending | Status::Creating => HostingStatus::NodeCreating,
            Status::Active => HostingStatus::NodeActive,
            // `visible_node` filtered out deleting and deleted.
            Status::Failed | Status::Deleting | Status::Deleted => HostingStatus::NodeFailed,
        });
    }
    Some(match subscription {
        SubscriptionState::Active(_) => HostingStatus::SubscribedNoNode,
        SubscriptionState::Inactive {
            last_known:
                Some(SubscriptionSnapshot {
                    expires_at: Some(expired),
                    ..
                }),
        } if *expired < now => HostingStatus::SubscriptionExpired,
        SubscriptionState::Inactive { .. } => HostingStatus::NoSubscription,
        SubscriptionState::Unknown => return None,
    })
}

/// The human message that goes with each status.
pub fn hosting_message(status: HostingStatus, node: Option<&Resource>) -> String {
    match status {
        HostingStatus::NoSubscription => "No active hosting subscription.".into(),
        HostingStatus::SubscribedNoNode => {
            "Subscription active. Choose a region to create your node.".into()
        }
        HostingStatus::NodeCreating => "Your node is being created.".into(),
        HostingStatus::NodeActive => "Node is active and ready to use.".into(),
        HostingStatus::NodeFailed => match node.and_then(|n| n.error_message.as_deref()) {
            Some(err) => format!("Node creation failed: {err}. Delete it and try again."),
            None => "Node creation failed. Delete it and try again.".into(),
        },
        HostingStatus::SubscriptionExpired => "Your hosting subscription has expired.".into(),
    }
}

/// How far a node's creation got: the four steps the app shows, in order. Stored as its
/// step number (1 to 4), which only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Step 1: the order is recorded (payment confirmed).
    Ordered = 1,
    /// Step 2: the VPS is asked for (or found) at the hosting service.
    VpsRequested = 2,
    /// Step 3: the node agent installs.
    Installing = 3,
    /// Step 4: up, with its last details to come (or ready).
    Finalizing = 4,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Ordered,
        Phase::VpsRequested,
        Phase::Installing,
        Phase::Finalizing,
    ];

    /// The step number, 1 to 4.
    pub fn step(self) -> i32 {
        self as i32
    }

    /// The phase of a stored step number; a number out of range is clamped (a row written
    /// by hand, or by an older build, still reads).
    pub fn of_step(step: i32) -> Phase {
        Phase::ALL[(step.clamp(1, 4) - 1) as usize]
    }

    /// The step's name as the app shows it.
    pub fn name(self) -> &'static str {
        STEP_NAMES[(self.step() - 1) as usize]
    }
}

pub const STEP_NAMES: [&str; 4] = [
    "Payment confirmed",
    "VPS creating",
    "Installing sing-box",
    "Node ready",
];

/// Status of one creation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
}

/// One of the four creation steps.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// 1 to 4.
    pub step: i32,
    /// `Payment confirmed`, `VPS creating`, `Installing sing-box` or `Node ready`.
    pub name: &'static str,
    pub status: StepStatus,
    #[serde(
        serialize_with = "super::units::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<DateTime<Utc>>,
}

/// How far a node's creation got, step by step.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreationProgress {
    pub current_step: i32,
    pub total_steps: i32,
    pub step_name: &'static str,
    pub steps: Vec<Step>,
}

/// The event that starts each step.
fn step_of(kind: EventKind) -> Option<Phase> {
    match kind {
        EventKind::ProvisionRequested => Some(Phase::Ordered),
        EventKind::VpsCreateRequested | EventKind::NodeAdopted | EventKind::NodeRecovered => {
            Some(Phase::VpsRequested)
        }
        EventKind::NodeInstalling => Some(Phase::Installing),
        EventKind::NodeFinalizing | EventKind::NodeReady => Some(Phase::Finalizing),
        _ => None,
    }
}

/// Builds `creation_progress` from the resource and its history. The current step is the
/// furthest one the resource reached; each step's `started_at` is when its first event was
/// recorded, and a step still `pending` has none (CONTRACTS.md §4.7: the history may run
/// a moment ahead of the phase, or a failed step's successors may have events).
pub fn creation_progress(resource: &Resource, events: &[Event]) -> CreationProgress {
    let current = resource.phase;
    let steps = Phase::ALL
        .into_iter()
        .map(|n| {
            let started_at = events
                .iter()
                .filter(|e| step_of(e.kind) == Some(n))
                .map(|e| e.at)
                .min()
                .or_else(|| (n == Phase::Ordered).then_some(resource.created_at));
            let status = match (n.cmp(&current), resource.status) {
                (std::cmp::Ordering::Less, _) => StepStatus::Completed,
                (std::cmp::Ordering::Greater, _) => StepStatus::Pending,
                (_, Status::Active) => StepStatus::Completed,
                (_, Status::Failed) => StepStatus::Failed,
                // Step 1 is done the moment the resource exists: payment is confirmed.
                _ if n == Phase::Ordered => StepStatus::Completed,
                _ => StepStatus::InProgress,
            };
            Step {
                step: n.step(),
                name: n.name(),
                status,
                started_at: started_at.filter(|_| status != StepStatus::Pending),
            }
        })
        .collect();
    CreationProgress {
        current_step: current.step(),
        total_steps: 4,
        step_name: current.name(),
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResourceKind;
    use chrono::TimeZone;

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 22, 21, min, 0).unwrap()
    }

    #[test]
    fn phases_are_ordered_steps_and_a_stored_number_out_of_range_is_clamped() {
        assert!(Phase::Ordered < Phase::VpsRequested && Phase::Installing < Phase::Finalizing);
        for p in Phase::ALL {
            assert_eq!(Phase::of_step(p.step()), p);
        }
        assert_eq!(Phase::of_step(0), Phase::Ordered);
        assert_eq!(Phase::of_step(9), Phase::Finalizing);
        assert_eq!(Phase::Installing.name(), "Installing sing-box");
    }

    fn node(status: Status, desired: Desired, phase: i32) -> Resource {
        Resource {
            phase: Phase::of_step(phase),
            error_message: Some("boom".into()),
            ..Resource::fixture(ResourceKind::HostingNode, status, desired, at(0))
        }
    }

    fn snapshot(expires: Option<DateTime<Utc>>) -> SubscriptionSnapshot {
        SubscriptionSnapshot {
            subscription_id: "sub".into(),
            status: "active".into(),
            plan_tier: "premium".into(),
            expires_at: expires,
            auto_renew: true,
            quantity: None,
        }
    }

    #[test]
    fn every_hosting_status_is_reachable_and_derived_as_documented() {
        use HostingStatus::*;
        let now = at(30);
        let active = SubscriptionState::Active(snapshot(Some(at(59))));
        let expired = SubscriptionState::Inactive {
            last_known: Some(snapshot(Some(at(10)))),
        };
        let never = SubscriptionState::Inactive { last_known: None };
        let cases = [
            (&never, None, Some(NoSubscription)),
            (&active, None, Some(SubscribedNoNode)),
            (&expired, None, Some(SubscriptionExpired)),
            (&SubscriptionState::Unknown, None, None),
            (
                &active,
                Some(node(Status::Pending, Desired::Active, 1)),
                Some(NodeCreating),
            ),
            (
                &active,
                Some(node(Status::Creating, Desired::Active, 2)),
                Some(NodeCreating),
            ),
            (
                &active,
                Some(node(Status::Active, Desired::Active, 4)),
                Some(NodeActive),
            ),
            (
                &active,
                Some(node(Status::Failed, Desired::Active, 2)),
                Some(NodeFailed),
            ),
            (
                &active,
                Some(node(Status::Deleting, Desired::Deleted, 4)),
                Some(SubscribedNoNode),
            ),
            (
                &active,
                Some(node(Status::Active, Desired::Deleted, 4)),
                Some(SubscribedNoNode),
            ),
            (
                &never,
                Some(node(Status::Deleted, Desired::Deleted, 4)),
                Some(NoSubscription),
            ),
            // The node is never hidden behind the subscription service's answer.
            (
                &never,
                Some(node(Status::Active, Desired::Active, 4)),
                Some(NodeActive),
            ),
            (
                &SubscriptionState::Unknown,
                Some(node(Status::Active, Desired::Active, 4)),
                Some(NodeActive),
            ),
        ];
        let mut seen = std::collections::HashSet::new();
        for (sub, node, want) in cases {
            let got = hosting_status(sub, node.as_ref(), now);
            assert_eq!(got, want, "{sub:?} / {:?}", node.map(|n| n.status));
            seen.extend(got);
        }
        assert_eq!(seen.len(), HostingStatus::ALL.len());
    }

    #[test]
    fn a_subscription_expiring_in_the_future_is_not_expired() {
        let inactive = SubscriptionState::Inactive {
            last_known: Some(snapshot(Some(at(59)))),
        };
        assert_eq!(
            hosting_status(&inactive, None, at(30)),
            Some(HostingStatus::NoSubscription)
        );
    }

    fn ev(kind: EventKind, min: u32) -> Event {
        Event {
            kind,
            actor: "engine".into(),
            message: None,
            at: at(min),
        }
    }

    #[test]
    fn progress_follows_the_lifecycle_with_real_timestamps() {
        use StepStatus::*;
        let mut events = vec![ev(EventKind::ProvisionRequested, 0)];
        let statuses = |p: &CreationProgress| p.steps.iter().map(|s| s.status).collect::<Vec<_>>();

        let p = creation_progress(&node(Status::Pending, Desired::Active, 1), &events);
        assert_eq!((p.current_step, p.step_name), (1, "Payment confirmed"));
        assert_eq!(statuses(&p), [Completed, Pending, Pending, Pending]);
        assert_eq!(p.steps[0].started_at, Some(at(0)));
        assert_eq!(p.steps[1].started_at, None);

        events.push(ev(EventKind::VpsCreateRequested, 1));
        let p = creation_progress(&node(Status::Creating, Desired::Active, 2), &events);
        assert_eq!((p.current_step, p.step_name), (2, "VPS creating"));
        assert_eq!(statuses(&p), [Completed, InProgress, Pending, Pending]);
        assert_eq!(p.steps[1].started_at, Some(at(1)));

        events.push(ev(EventKind::NodeInstalling, 3));
        let p = creation_progress(&node(Status::Creating, Desired::Active, 3), &events);
        assert_eq!(p.step_name, "Installing sing-box");
        assert_eq!(statuses(&p), [Completed, Completed, InProgress, Pending]);
        assert_eq!(p.steps[2].started_at, Some(at(3)));

        events.push(ev(EventKind::NodeFinalizing, 5));
        let p = creation_progress(&node(Status::Creating, Desired::Active, 4), &events);
        assert_eq!(p.step_name, "Node ready");
        assert_eq!(statuses(&p), [Completed, Completed, Completed, InProgress]);
        assert_eq!(p.steps[3].started_at, Some(at(5)));

        let p = creation_progress(&node(Status::Active, Desired::Active, 4), &events);
        assert_eq!(statuses(&p), [Completed; 4]);

        let p = creation_progress(&node(Status::Failed, Desired::Active, 3), &events);
        assert_eq!(statuses(&p), [Completed, Completed, Failed, Pending]);
        assert_eq!(p.total_steps, 4);
    }

    #[test]
    fn a_pending_step_has_no_start_even_when_its_event_is_recorded() {
        // Right after a create: the VPS request is in the history, the phase not yet moved.
        let events = [
            ev(EventKind::ProvisionRequested, 0),
            ev(EventKind::VpsCreateRequested, 1),
        ];
        let p = creation_progress(&node(Status::Pending, Desired::Active, 1), &events);
        assert_eq!(p.steps[1].status, StepStatus::Pending);
        assert_eq!(p.steps[1].started_at, None);
        assert_eq!(p.steps[0].started_at, Some(at(0)));
    }

    #[test]
    fn progress_falls_back_to_the_creation_time_for_step_one() {
        let p = creation_progress(&node(Status::Pending, Desired::Active, 1), &[]);
        assert_eq!(p.steps[0].started_at, Some(at(0)));
    }
}
