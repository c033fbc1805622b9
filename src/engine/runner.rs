//! The loops around the engine's ticks: claim as much as there is room for, run the steps
//! concurrently, and sleep until woken (LISTEN/NOTIFY or in-process), until the next item
//! is due, or until the fallback poll, whichever is first. Shutdown stops claiming and
//! waits for the steps in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::Engine;
use crate::store::StoreResult;

/// Tells the loops to stop; dropping it does too.
pub struct Shutdown {
    tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Shutdown {
    /// Drops the loops and their steps wherever they are (a crash, for tests).
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Stops claiming new work and waits for the work in flight.
    pub async fn stop(self) {
        let _ = self.tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the reconciler and the outbox dispatcher.
pub fn spawn(engine: Arc<Engine>) -> Shutdown {
    let (tx, rx) = watch::channel(false);
    let wakeups = engine.ports.store.wakeups();
    let reconciler = {
        let engine = engine.clone();
        let wakeups = wakeups.clone();
        run_loop(
            "reconciler",
            engine.clone(),
            rx.clone(),
            move |e, n| Box::pin(async move { e.claim_resources(n).await }),
            |e, r| Box::pin(async move { e.reconcile(r).await }),
            move |e| Box::pin(async move { e.ports.store.next_resource_due().await }),
            move || wakeups.clone(),
            |w| &w.resources,
        )
    };
    let dispatcher = {
        let wakeups = wakeups.clone();
        run_loop(
            "outbox",
            engine.clone(),
            rx,
            move |e, n| Box::pin(async move { e.claim_outbox(n).await }),
            |e, m| {
                Box::pin(async move {
                    e.deliver(m).await;
                    Ok(())
                })
            },
            move |e| Box::pin(async move { e.ports.store.next_outbox_due().await }),
            move || wakeups.clone(),
            |w| &w.outbox,
        )
    };
    Shutdown {
        tx,
        tasks: vec![tokio::spawn(reconciler), tokio::spawn(dispatcher)],
    }
}

type BoxFut<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[expect(
    clippy::too_many_arguments,
    reason = "one generic loop serves both workers"
)]
async fn run_loop<T: Send + 'static>(
    name: &'static str,
    engine: Arc<Engine>,
    mut stop: watch::Receiver<bool>,
    claim: impl Fn(Arc<Engine>, i64) -> BoxFut<'static, StoreResult<Vec<T>>>,
    step: impl Fn(Arc<Engine>, T) -> BoxFut<'static, anyhow::Result<()>> + Copy + Send + 'static,
    next_due: impl Fn(
        Arc<Engine>,
    ) -> BoxFut<'static, StoreResult<Option<chrono::DateTime<chrono::Utc>>>>,
    wakeups: impl Fn() -> Arc<crate::store::Wakeups>,
    signal: fn(&crate::store::Wakeups) -> &Notify,
) {
    let capacity = engine.config.concurrency.max(1);
    let mut running: JoinSet<()> = JoinSet::new();
    let wakeups = wakeups();
    tracing::info!(worker = name, owner = %engine.config.owner, "engine loop started");
    loop {
        if *stop.borrow() {
            break;
        }
        // Register for a wake-up before looking, so one sent meanwhile is not missed.
        let woken = signal(&wakeups).notified();
        tokio::pin!(woken);
        woken.as_mut().enable();

        let room = capacity - running.len();
        let claimed = if room > 0 {
            match claim(engine.clone(), room as i64).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "claim failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        let got = claimed.len();
        for item in claimed {
            let engine = engine.clone();
            running.spawn(async move {
                if let Err(e) = step(engine, item).await {
                    tracing::warn!(worker = name, error = %e, "step failed; its lease will expire and it will be retried");
                }
            });
        }
        if got > 0 && got == room {
            // There may be more waiting: look again as soon as there is room.
            if running.len() >= capacity {
                reap(&mut running, name).await;
            }
            continue;
        }
        let sleep = match next_due(engine.clone()).await {
            Ok(Some(at)) => (at - engine.ports.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(engine.config.fallback_poll),
            Ok(None) => engine.config.fallback_poll,
            Err(_) => Duration::from_secs(1),
        };
        // An item due "now" that we did not get is leased elsewhere or racing; don't spin.
        let sleep = sleep.max(Duration::from_millis(20));
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(sleep) => {}
            Some(done) = running.join_next(), if !running.is_empty() => log_join(done, name),
            _ = stop.changed() => {}
        }
    }
    while let Some(done) = running.join_next().await {
        log_join(done, name);
    }
    tracing::info!(worker = name, "engine loop stopped");
}

async fn reap(running: &mut JoinSet<()>, name: &str) {
    if let Some(done) = running.join_next().await {
        log_join(done, name);
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>, name: &str) {
    if let Err(e) = done {
        // A panicking step loses nothing: its lease expires and the item is retried.
        tracing::error!(worker = name, error = %e, "a step panicked");
    }
}
