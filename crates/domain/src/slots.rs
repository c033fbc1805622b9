//! Several nodes per hosting subscription: how many a subscription pays for, and which
//! numbered slot a new node takes. The database holds the slots (a unique index over the
//! live nodes' `(subscription_id, slot)`), so "at most N" holds under any concurrency: two
//! creates that pick the same slot cannot both commit.

/// The node limit when nothing says otherwise.
pub const DEFAULT_NODE_LIMIT: u32 = 1;

/// How many nodes a subscription pays for: the subscription service's `quantity` when its
/// answer carries one, else the latest recorded order's, else one. Out-of-range values
/// from outside are clamped to `1..=max`.
pub fn node_limit(from_subscription: Option<i64>, latest_order: Option<i64>, max: u32) -> u32 {
    let n = from_subscription
        .or(latest_order)
        .unwrap_or(DEFAULT_NODE_LIMIT.into());
    n.clamp(1, max.max(1).into()) as u32
}

/// Which slots a new node may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotChoice {
    /// Exactly this slot (the single-node `POST /my/node` takes slot 1, so that two
    /// concurrent requests collide on it and create one node).
    Exactly(i32),
    /// Any free slot from 1 to the limit.
    UpTo(u32),
}

/// The free slots a new node may take, lowest first, given the slots live nodes hold.
pub fn free_slots(taken: &[i32], choice: SlotChoice) -> Vec<i32> {
    let candidates: Vec<i32> = match choice {
        SlotChoice::Exactly(s) => vec![s],
        SlotChoice::UpTo(limit) => (1..=limit as i32).collect(),
    };
    candidates
        .into_iter()
        .filter(|s| !taken.contains(s))
        .collect()
}

/// How many more nodes an order for `quantity` creates when `live` exist.
pub fn missing(live: usize, quantity: u32) -> usize {
    (quantity as usize).saturating_sub(live)
}

/// A subscription has more live nodes than it pays for (a later order lowered the
/// quantity): nothing is deleted by itself, an operator decides.
pub fn over_limit(live: usize, limit: u32) -> bool {
    live > limit as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_service_wins_then_the_latest_order_then_one() {
        assert_eq!(node_limit(Some(3), Some(5), 10), 3);
        assert_eq!(node_limit(None, Some(5), 10), 5);
        assert_eq!(node_limit(None, None, 10), 1);
        assert_eq!(node_limit(Some(50), None, 10), 10, "clamped to the maximum");
        assert_eq!(node_limit(Some(0), None, 10), 1, "never below one");
        assert_eq!(node_limit(Some(-4), Some(2), 10), 1);
    }

    #[test]
    fn free_slots_are_the_lowest_untaken_up_to_the_limit() {
        assert_eq!(free_slots(&[], SlotChoice::UpTo(3)), vec![1, 2, 3]);
        assert_eq!(free_slots(&[2], SlotChoice::UpTo(3)), vec![1, 3]);
        assert_eq!(
            free_slots(&[1, 2, 3], SlotChoice::UpTo(3)),
            Vec::<i32>::new()
        );
        // A lowered limit: slots above it are taken but no new one is offered.
        assert_eq!(free_slots(&[1, 4, 5], SlotChoice::UpTo(2)), vec![2]);
        assert_eq!(free_slots(&[4], SlotChoice::UpTo(0)), Vec::<i32>::new());
    }

    #[test]
    fn exactly_one_slot_is_offered_only_when_free() {
        assert_eq!(free_slots(&[], SlotChoice::Exactly(1)), vec![1]);
        assert_eq!(free_slots(&[1], SlotChoice::Exactly(1)), Vec::<i32>::new());
        assert_eq!(free_slots(&[2, 3], SlotChoice::Exactly(1)), vec![1]);
    }

    #[test]
    fn an_order_creates_what_is_missing_and_a_lower_one_deletes_nothing() {
        assert_eq!(missing(0, 3), 3);
        assert_eq!(missing(2, 3), 1);
        assert_eq!(missing(5, 3), 0);
        assert!(over_limit(5, 3));
        assert!(!over_limit(3, 3));
        assert!(!over_limit(0, 1));
    }
}
