//! The loops around the engine's ticks: claim as much as there is room for, run the steps
//! concurrently, and sleep until woken (LISTEN/NOTIFY or in-process), until the next item
//! is due, or until the fallback poll, whichever is first. Shutdown stops claiming and
//! waits for the steps in flight.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Engine;
use domain::Resource;
use ports::store::{ChangeBus, LIFELINE_BEAT, LIFELINE_STALE, OutboxMessage, Signal, StoreResult};

/// Tells the loops to stop.
pub struct Shutdown {
    engine: Arc<Engine>,
    tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Shutdown {
    /// Stops claiming new work and waits for the work in flight; then the process's
    /// lifeline ends, so whatever it still holds is free to others at once.
    pub async fn stop(self) {
        let _ = self.tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // In a task of its own: a bug there (a panic) must not turn a stop into one.
        let engine = self.engine;
        let ended = tokio::spawn(async move {
            let now = engine.ports.clock.now();
            engine
                .ports
                .store
                .beat(&engine.config.owner, now, now)
                .await
        })
        .await;
        if !matches!(ended, Ok(Ok(()))) {
            tracing::warn!("could not end the lifeline; its leases end on their own");
        }
    }

    /// Drops the loops and their steps wherever they are (a crash, for tests).
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the reconciler, the outbox dispatcher, the periodic jobs and, where other
/// processes write the database too, the net under their news.
pub fn spawn(engine: Arc<Engine>) -> Shutdown {
    let (tx, rx) = watch::channel(false);
    let mut tasks = vec![
        supervised(
            &engine,
            "lifeline",
            &rx,
            run_lifeline(engine.clone(), rx.clone()),
        ),
        supervised(
            &engine,
            Reconciler::NAME,
            &rx,
            run::<Reconciler>(engine.clone(), rx.clone()),
        ),
        supervised(
            &engine,
            Dispatcher::NAME,
            &rx,
            run::<Dispatcher>(engine.clone(), rx.clone()),
        ),
        supervised(&engine, "jobs", &rx, run_jobs(engine.clone(), rx.clone())),
    ];
    if engine.ports.store.shared() {
        let net = super::news_net::run(engine.ports.store.clone(), rx.clone());
        tasks.push(supervised(&engine, "news net", &rx, net));
    }
    Shutdown {
        engine: engine.clone(),
        tx,
        tasks,
    }
}

/// Beats this process's lifeline every `LIFELINE_BEAT` while it works under a lease: its
/// leases are then its own until they end; once it stops beating (killed, or stalled for
/// `LIFELINE_STALE`), other processes take them at once. Holding nothing, it rests: one
/// write says it lives for a day (a lease taken before the next beat then stands on its
/// own length), and an idle service writes nothing. A beat that fails is tried again at
/// the next tick.
async fn run_lifeline(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let (store, clock, owner) = (
        &engine.ports.store,
        &engine.ports.clock,
        &engine.config.owner,
    );
    let day = chrono::Duration::days(1);
    if let Err(e) = store.purge_lifelines(clock.now() - day).await {
        tracing::warn!(error = %e, "could not purge old lifelines");
    }
    let stale = chrono::Duration::from_std(LIFELINE_STALE).expect("a few seconds");
    let mut resting = false;
    loop {
        let now = clock.now();
        let beat = if engine.holds_leases() {
            Some((now + stale, false))
        } else if !resting {
            Some((now + day, true))
        } else {
            None
        };
        if let Some((dead_at, rest)) = beat {
            match store.beat(owner, now, dead_at).await {
                Ok(()) => resting = rest,
                Err(e) => tracing::warn!(error = %e, "lifeline beat failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(LIFELINE_BEAT) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs a loop, and records its death if it ends (returns or panics) while no one asked
/// it to stop.
fn supervised(
    engine: &Arc<Engine>,
    name: &'static str,
    stop: &watch::Receiver<bool>,
    body: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    struct Watch {
        engine: Arc<Engine>,
        name: &'static str,
        stop: watch::Receiver<bool>,
    }
    impl Drop for Watch {
        fn drop(&mut self) {
            if !*self.stop.borrow() {
                tracing::error!(
                    worker = self.name,
                    "an engine loop died; the process is no longer ready"
                );
                self.engine.died.send_replace(Some(self.name));
            }
        }
    }
    let watch = Watch {
        engine: engine.clone(),
        name,
        stop: stop.clone(),
    };
    tokio::spawn(async move {
        let _watch = watch;
        body.await;
    })
}

/// What a loop drives: how to claim work, do one item, and tell when more is due.
#[async_trait]
trait Worker: 'static {
    type Item: Send + 'static;
    const NAME: &'static str;
    async fn claim(engine: &Engine, limit: i64) -> StoreResult<Vec<Self::Item>>;
    async fn step(engine: Arc<Engine>, item: Self::Item) -> anyhow::Result<()>;
    async fn next_due(engine: &Engine) -> StoreResult<Option<DateTime<Utc>>>;
    /// The earliest time this process's own steps scheduled work for, if any.
    fn scheduled(engine: &Engine) -> Option<DateTime<Utc>>;
    fn signal(bus: &ChangeBus) -> &Signal;
}

struct Reconciler;

#[async_trait]
impl Worker for Reconciler {
    type Item = Resource;
    const NAME: &'static str = "reconciler";

    async fn claim(engine: &Engine, limit: i64) -> StoreResult<Vec<Resource>> {
        engine.claim_resources(limit).await
    }

    async fn step(engine: Arc<Engine>, item: Resource) -> anyhow::Result<()> {
        Ok(engine.reconcile(item).await?)
    }

    async fn next_due(engine: &Engine) -> StoreResult<Option<DateTime<Utc>>> {
        engine.ports.store.next_resource_due().await
    }

    fn scheduled(engine: &Engine) -> Option<DateTime<Utc>> {
        Engine::take_wake(&engine.next_resource_wake)
    }

    fn signal(bus: &ChangeBus) -> &Signal {
        &bus.resources
    }
}

struct Dispatcher;

#[async_trait]
impl Worker for Dispatcher {
    type Item = OutboxMessage;
    const NAME: &'static str = "outbox";

    async fn claim(engine: &Engine, limit: i64) -> StoreResult<Vec<OutboxMessage>> {
        engine.claim_outbox(limit).await
    }

    async fn step(engine: Arc<Engine>, item: OutboxMessage) -> anyhow::Result<()> {
        engine.deliver(item).await;
        Ok(())
    }

    async fn next_due(engine: &Engine) -> StoreResult<Option<DateTime<Utc>>> {
        engine.ports.store.next_outbox_due().await
    }

    fn scheduled(engine: &Engine) -> Option<DateTime<Utc>> {
        Engine::take_wake(&engine.next_outbox_wake)
    }

    fn signal(bus: &ChangeBus) -> &Signal {
        &bus.outbox
    }
}

async fn run<W: Worker>(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let capacity = engine.config.concurrency.max(1);
    let bus = engine.ports.store.bus();
    let mut running: JoinSet<()> = JoinSet::new();
    // The earliest known time more work is due: from this process's own steps, and from
    // the database when a claim comes back empty (so a busy loop costs no extra queries).
    let mut next_known: Option<DateTime<Utc>> = None;
    // Set when the loop slept its whole fallback poll with nothing known to be due: then it
    // first asks when work is due (one query) and claims only if some is now, so an idle
    // loop costs one query per poll.
    let mut idle_poll = false;
    // However the loop ends (a panic too), work committed after it is the others'.
    let _no_room = NoRoomOnExit(W::signal(&bus));
    tracing::info!(worker = W::NAME, owner = %engine.config.owner, "engine loop started");
    while !*stop.borrow() {
        while let Some(done) = running.try_join_next() {
            log_join(done, W::NAME);
        }
        // Register for a wake-up before looking, so one sent meanwhile is not missed.
        let woken = W::signal(&bus).notified();
        tokio::pin!(woken);
        woken.as_mut().enable();

        let room = capacity.saturating_sub(running.len());
        W::signal(&bus).set_room(room);
        if room > 0 && next_known.is_some_and(|t| t <= engine.ports.clock.now()) {
            next_known = None; // this claim covers it
        }
        let looked = match std::mem::take(&mut idle_poll) && room > 0 {
            // A failed look: claim as usual.
            true => W::next_due(&engine).await.ok(),
            false => None,
        };
        let nothing_due =
            looked.is_some_and(|due| due.is_none_or(|t| t > engine.ports.clock.now()));
        let claimed = if room == 0 || nothing_due {
            Vec::new()
        } else {
            match W::claim(&engine, room as i64).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(worker = W::NAME, error = %e, "claim failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            }
        };
        let got = claimed.len();
        W::signal(&bus).set_room(room - got);
        for item in claimed {
            let engine = engine.clone();
            running.spawn(async move {
                if let Err(e) = W::step(engine, item).await {
                    tracing::warn!(worker = W::NAME, error = %e, "step failed; its lease will expire and it will be retried");
                }
            });
        }
        if got > 0 && got == room {
            // There may be more waiting: look again once there is room.
            continue;
        }
        let from_db = match (got, room) {
            _ if nothing_due => looked.flatten(),
            (0, 1..) => W::next_due(&engine).await.unwrap_or(None),
            _ => None,
        };
        next_known = [next_known, from_db, W::scheduled(&engine)]
            .into_iter()
            .flatten()
            .min();
        let now = engine.ports.clock.now();
        let sleep = next_known
            .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(engine.config.fallback_poll)
            .min(engine.config.fallback_poll)
            // Something due "now" that we did not get is leased elsewhere: don't spin.
            .max(Duration::from_millis(20));
        let full = running.len() >= capacity;
        tokio::select! {
            _ = &mut woken => {
                // Let a burst gather so it is claimed in one batch.
                tokio::time::sleep(engine.config.batch_window).await;
            }
            _ = tokio::time::sleep(sleep) => {
                idle_poll = next_known.is_none_or(|t| t > engine.ports.clock.now());
            }
            Some(done) = running.join_next(), if full => log_join(done, W::NAME),
            _ = stop.changed() => {}
        }
    }
    // Stopping: work committed from now on is for the other replicas.
    W::signal(&bus).set_room(0);
    while let Some(done) = running.join_next().await {
        log_join(done, W::NAME);
    }
    tracing::info!(worker = W::NAME, "engine loop stopped");
}

struct NoRoomOnExit<'a>(&'a Signal);

impl Drop for NoRoomOnExit<'_> {
    fn drop(&mut self) {
        self.0.set_room(0);
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>, name: &str) {
    if let Err(e) = done {
        // A panicking step loses nothing: its lease expires and the item is retried.
        tracing::error!(worker = name, error = %e, "a step panicked");
    }
}

/// The periodic jobs (VPN traffic sync, orphan sweep): each is a leased row in `jobs`, so
/// one replica runs each pass; every replica looks now and then whether one is due.
async fn run_jobs(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let look = engine
        .config
        .traffic
        .interval
        .min(engine.config.sweep.interval)
        .min(engine.config.retention.interval)
        .min(Duration::from_secs(30))
        .max(Duration::from_millis(50));
    while !*stop.borrow() {
        if let Err(e) = engine.traffic_sync_tick().await {
            tracing::warn!(error = %e, "vpn traffic sync failed");
        }
        if let Err(e) = engine.sweep_tick().await {
            tracing::warn!(error = %e, "orphan sweep failed");
        }
        if let Err(e) = engine.retention_tick().await {
            tracing::warn!(error = %e, "retention pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(look) => {}
            _ = stop.changed() => {}
        }
    }
}

impl Engine {
    /// Takes every step and delivery that is due, beside the loops, until none is due and
    /// none is in flight in this process (seen twice in a row): "and then nothing more
    /// happens", without waiting on the clock. Work scheduled for later (a backoff, a
    /// poll) is left to its time. `false` when that quiet did not come within `limit`.
    pub async fn drain(self: &Arc<Self>, limit: Duration) -> StoreResult<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut quiet_once = false;
        loop {
            let worked =
                self.drain_once::<Reconciler>().await? | self.drain_once::<Dispatcher>().await?;
            let quiet = !worked
                && !self.due::<Reconciler>().await?
                && !self.due::<Dispatcher>().await?
                && !self.holds_leases()
                && !self.due::<Reconciler>().await?
                && !self.due::<Dispatcher>().await?;
            if quiet && quiet_once {
                return Ok(true);
            }
            quiet_once = quiet;
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            if !worked {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Claims what `W` has due and takes each item's step here; whether there was any.
    async fn drain_once<W: Worker>(self: &Arc<Self>) -> StoreResult<bool> {
        let items = W::claim(self, 32).await?;
        let worked = !items.is_empty();
        for item in items {
            if let Err(e) = W::step(self.clone(), item).await {
                tracing::warn!(worker = W::NAME, error = %e, "step failed while draining");
            }
        }
        Ok(worked)
    }

    /// Whether `W` has work due now (not counting work leased: that is in flight).
    async fn due<W: Worker>(&self) -> StoreResult<bool> {
        let next = W::next_due(self).await?;
        Ok(next.is_some_and(|at| at <= self.ports.clock.now()))
    }
}
