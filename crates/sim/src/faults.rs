//! Fault injection for the simulators: scripted faults for the next calls of one operation
//! (deterministic, for tests) and random ones at configured rates (for chaos and demos).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Every upstream operation a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    CreateNode,
    GetNode,
    DeleteNode,
    ListNodes,
    ActiveSubscription,
    Callback,
    VpnCreate,
    VpnGet,
    VpnUpdate,
    VpnDelete,
    VpnSubscribe,
    VpnSync,
}

/// What goes wrong with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "status")]
pub enum Fault {
    /// Answer this HTTP status without doing anything.
    Error(u16),
    /// Do nothing and answer only after the hang time (the caller times out).
    Hang,
    /// Do the work, then answer with an unreadable body.
    Garbage,
    /// Do the work, then answer only after the hang time: the response arrives after the
    /// caller gave up, and the call did take effect.
    LostResponse,
}

impl Fault {
    /// Whether the operation takes effect despite the fault.
    pub fn takes_effect(self) -> bool {
        matches!(self, Fault::Garbage | Fault::LostResponse)
    }
}

/// Random fault rates and delays.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Knobs {
    /// Added to every call.
    pub latency_ms: u64,
    /// Fraction of calls answered with 503.
    pub failure_rate: f64,
    /// Fraction of calls that hang.
    pub timeout_rate: f64,
    /// How long a hanging call hangs.
    pub hang_ms: u64,
    /// Fraction of calls that take effect but answer only after the hang time (the caller
    /// has given up by then: the answer is lost).
    pub lost_response_rate: f64,
}

/// The fault plan shared by the simulators.
pub struct Faults {
    knobs: Mutex<Knobs>,
    scripted: Mutex<HashMap<Op, VecDeque<Fault>>>,
}

impl Faults {
    pub fn new(knobs: Knobs) -> Self {
        Faults {
            knobs: Mutex::new(knobs),
            scripted: Mutex::new(HashMap::new()),
        }
    }

    pub fn knobs(&self) -> Knobs {
        self.knobs.lock().unwrap().clone()
    }

    pub fn set_knobs(&self, knobs: Knobs) {
        *self.knobs.lock().unwrap() = knobs;
    }

    /// Makes the next calls of `op` fail in these ways, in order.
    pub fn script(&self, op: Op, faults: impl IntoIterator<Item = Fault>) {
        self.scripted
            .lock()
            .unwrap()
            .entry(op)
            .or_default()
            .extend(faults);
    }

    pub fn clear(&self) {
        self.scripted.lock().unwrap().clear();
        *self.knobs.lock().unwrap() = Knobs::default();
    }

    /// The fault for the next call of `op`, if any.
    pub fn next(&self, op: Op) -> Option<Fault> {
        if let Some(f) = self
            .scripted
            .lock()
            .unwrap()
            .get_mut(&op)
            .and_then(VecDeque::pop_front)
        {
            return Some(f);
        }
        let k = self.knobs();
        let roll: f64 = rand::random();
        if roll < k.failure_rate {
            Some(Fault::Error(503))
        } else if roll < k.failure_rate + k.timeout_rate {
            Some(Fault::Hang)
        } else if roll < k.failure_rate + k.timeout_rate + k.lost_response_rate {
            Some(Fault::LostResponse)
        } else {
            None
        }
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.knobs().latency_ms)
    }

    pub fn hang(&self) -> Duration {
        Duration::from_millis(self.knobs().hang_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_come_first_and_in_order() {
        let f = Faults::new(Knobs::default());
        f.script(Op::CreateNode, [Fault::Error(500), Fault::Hang]);
        assert_eq!(f.next(Op::GetNode), None);
        assert_eq!(f.next(Op::CreateNode), Some(Fault::Error(500)));
        assert_eq!(f.next(Op::CreateNode), Some(Fault::Hang));
        assert_eq!(f.next(Op::CreateNode), None);
    }

    #[test]
    fn a_failure_rate_of_one_fails_every_call() {
        let f = Faults::new(Knobs {
            failure_rate: 1.0,
            ..Knobs::default()
        });
        assert!((0..20).all(|_| f.next(Op::Callback) == Some(Fault::Error(503))));
    }
}
