//! `sync`: one VPN traffic-sync pass over many live VPN users.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::Args;
use crate::harness::*;

/// One traffic-sync pass over `sync_users` live VPN users (VPN manager in process, no
/// rate limit), against the floor of the same database work: one statement that writes
/// every one of those rows.
pub(crate) async fn sync_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_sync").await;
    let sim = sim(false);
    let running = start(&db, sim.clone()).await;
    let n = args.sync_users;
    // Seed directly: accounts at the VPN manager and live VPN user rows.
    let expire = chrono::Utc::now() + chrono::Duration::days(30);
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(
        "insert into resources (id, resource_type, subscription_id, user_id, order_key, provider, \
         region, plan_tier, status, desired_state, traffic_limit, created_at, updated_at, \
         vpn_user_id, expire_at, spec_version, applied_version) \
         select gen_random_uuid()::text, 'vpn_user', 'sync-sub-' || i, 'sync-user-' || i, \
         'sync-sub-' || i || '|sub', 'otun', '', 'premium', 'active', 'active', 1000, now(), now(), \
         'sync-uuid-' || i, $1, 1, 1 from generate_series(1, $2) as i",
    )
    .bind(expire)
    .bind(n as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    for i in 1..=n {
        let (user, _) = sim.vpn.create(&fulfillment::ports::CreateVpnUser {
            uuid: format!("sync-uuid-{i}"),
            email: String::new(),
            auth_user_id: format!("sync-user-{i}"),
            protocols: vec!["vless".into()],
            ss_password: String::new(),
            traffic_limit: 1000,
            expire_at: expire,
            service_tier: "premium".into(),
        });
        sim.vpn.set_traffic_used(&user.uuid, i as i64);
    }
    sqlx::query("vacuum analyze resources")
        .execute(&mut conn)
        .await
        .unwrap();
    let engine = running.state.app.engine.clone();
    // The simulated VPN manager's 100,000 accounts live in this process too.
    let rss_before = current_rss_mb();
    reset_peak_rss();
    let before = db.transactions().await;
    let started = Instant::now();
    let pass = engine.sync_vpn_traffic().await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let rss = peak_rss_mb();
    assert_eq!(pass.updated, n, "every live user synced");
    let synced: i64 = sqlx::query_scalar(
        "select count(*) from resources where traffic_used > 0 and traffic_synced_at is not null",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(synced as usize, n);
    running.stop().await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let queries = db.transactions().await - before;
    let floor_started = Instant::now();
    sqlx::query(
        "update resources set traffic_used = traffic_used + 1, traffic_synced_at = now() \
         where resource_type = 'vpn_user'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let floor = floor_started.elapsed().as_secs_f64();
    drop(conn);
    db.drop().await;
    let paced = n as f64 / 50.0;
    let _ = writeln!(
        report,
        "### VPN traffic sync ({n} live VPN users, VPN manager in process, no rate limit)\n\n\
         | measure | value |\n|---|---|\n\
         | one pass, wall time | {elapsed:.2} s ({:.0} users/s) |\n\
         | database statements issued (transactions in `pg_stat_database`) | {queries} ({} pages of 500) |\n\
         | baseline: one statement writing all {n} rows | {floor:.2} s |\n\
         | baseline / pass | {:.2} |\n\
         | RSS before the pass (service, and the simulated VPN manager's {n} accounts) | {rss_before:.1} MB |\n\
         | peak RSS during the pass | {rss:.1} MB (+{:.1} MB) |\n\
         | the same pass at the default pacing, `VPN_SYNC_RATE=50` | {paced:.0} s: each user refreshed about every {:.0} min |\n",
        n as f64 / elapsed,
        pass.pages,
        floor / elapsed,
        rss - rss_before,
        (paced + 300.0) / 60.0,
    );
}

/// The binary's allocator, since the service runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
