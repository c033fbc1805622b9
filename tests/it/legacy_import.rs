//! Taking over from the Go service (CONTRACTS.md §5): its database, written from §5.1,
//! imported by the real binary into ours (both backends), then the service started over
//! the simulators: what the clients see, and what the upstreams were asked.

use std::time::Duration;

use chrono::Timelike;
use fulfillment::sim::{NodeTiming, SimVpnUser};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, TestDb, wait_until};
use crate::legacy_fixture::{
    GoDb, GoNode, GoVpn, active, bare, days_ago, findings_of, import, import_ok, paid, trial,
};
use crate::on_both;

/// The service's configuration for these tests: the sweep runs every second, and judges
/// VPSes older than a minute (the Go service's are weeks old).
async fn prepared(b: Backend) -> TestApp {
    TestApp::prepare(b, NodeTiming::default(), |c| {
        c.engine.sweep.interval = Duration::from_secs(1);
        c.engine.sweep.grace = Duration::from_secs(60);
    })
    .await
}

/// A VPS the Go service made for `user`'s `subscription` 40 days ago (no correlation id
/// of ours: the Go service never sent one).
fn go_vps(app: &TestApp, user: &str, subscription: &str) -> String {
    let hosting = &app.sims.sim.hosting;
    hosting.add_node("obox", "", subscription, user, chrono::Duration::days(40))
}

fn nothing_asked_upstream(app: &TestApp) {
    let sim = &app.sims.sim;
    assert!(
        sim.hosting.creates().is_empty(),
        "{:?}",
        sim.hosting.creates()
    );
    assert!(
        sim.hosting.deletes().is_empty(),
        "{:?}",
        sim.hosting.deletes()
    );
    assert!(sim.vpn.creates().is_empty(), "{:?}", sim.vpn.creates());
    assert!(sim.vpn.updates().is_empty(), "{:?}", sim.vpn.updates());
    assert!(sim.vpn.deletes().is_empty(), "{:?}", sim.vpn.deletes());
    assert!(sim.subscriptions.callbacks().is_empty());
}

async fn events(app: &TestApp, id: Uuid) -> Vec<Value> {
    let (status, body) = app
        .internal(
            Method::GET,
            &format!("/api/internal/resources/{id}/events"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

on_both! {
    async fn active_nodes_keep_their_ids_and_connection_and_nothing_is_called(b: Backend) {
        let mut app = prepared(b).await;
        let go = GoDb::new().await;
        go.region("sa-east-1", "South America (São Paulo)", Some(true)).await;
        let vps = go_vps(&app, "u-1", "sub-1");
        let row = active("u-1", "sub-1", &vps);
        let id = go.node(&row).await;
        let before = go.digest().await;

        let report = import_ok(&app.db.url, &go, &[]).await;
        assert_eq!(report["hosting"], json!({"read": 1, "imported": 1, "already_imported": 0,
            "refused": 0, "by_status": {"active": 1}}));
        assert_eq!(report["regions"], 1);
        assert_eq!(report["findings"], json!([]));
        assert_eq!(go.digest().await, before, "the Go database is never written");

        app.sims.subscribe("u-1", "sub-1", "premium");
        app.start().await;
        let (status, doc) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(status, 200);
        assert_eq!(doc["hosting_status"], "node_active");
        let node = &doc["node"];
        assert_eq!(node["resource_id"], id.to_string());
        assert_eq!(node["status"], "active");
        for (field, value) in [("public_ip", json!("198.51.100.7")), ("api_port", json!(8080)),
            ("api_key", json!(format!("agent-key-{vps}"))), ("vless_port", json!(443)),
            ("ss_port", json!(8388)), ("public_key", json!("go-public-key")),
            ("short_id", json!("go-sid")), ("region", json!("ap-northeast-1")),
            ("traffic_limit_gb", json!(3072))] {
            assert_eq!(node[field], value, "{field}");
        }
        let (status, internal) = app.internal(Method::GET, &format!("/api/internal/resources/{id}"), None).await;
        assert_eq!((status, internal["subscription_id"].as_str()), (200, Some("sub-1")));
        let (_, regions) = app.user(Method::GET, "/api/v1/regions", "u-1", None).await;
        assert!(regions["regions"].as_array().unwrap().iter().any(|r| r["code"] == "sa-east-1"), "{regions}");
        // Nothing is created, deleted or reported because of the import.
        app.settle().await;
        nothing_asked_upstream(&app);

        // The subscription service deprovisions by the id it already holds.
        let (status, body) = app.internal(Method::POST, "/api/internal/deprovision",
            Some(json!({"subscription_id": "sub-1", "resource_id": id.to_string(), "reason": "subscription_cancelled"}))).await;
        assert_eq!((status, body["resource_id"].as_str()), (200, Some(id.to_string().as_str())), "{body}");
        let callbacks = app.wait_callbacks("sub-1", 1).await;
        assert_eq!(callbacks[0].status.as_str(), "deleted");
        assert_eq!(callbacks[0].resource_id.as_deref(), Some(id.to_string().as_str()));
        assert_eq!(app.sims.sim.hosting.deletes(), vec![vps.clone()]);
        assert!(app.sims.sim.hosting.node(&vps).is_none());
    }
}

/// A Go database with a row of every kind.
async fn mixed(app: &TestApp, go: &GoDb) -> Vec<Uuid> {
    let a = go_vps(app, "u-m", "sub-m");
    let b = go_vps(app, "u-s", "sub-s");
    let mut rows = vec![
        go.node(&active("u-m", "sub-m", &a)).await,
        go.node(&bare("u-s", "sub-s", "stopping", &b)).await,
        go.node(&bare("u-p", "sub-p", "pending", "")).await,
        go.node(&GoNode {
            needs_cleanup: true,
            ..bare("u-f", "sub-f", "failed", "gone-1")
        })
        .await,
        go.node(&GoNode {
            deleted_at: Some(days_ago(3)),
            ..bare("u-d", "sub-d", "deleted", "gone-2")
        })
        .await,
        go.node(&GoNode {
            plan_tier: "gold".into(),
            ..bare("u-r", "sub-r", "active", "r-1")
        })
        .await,
    ];
    rows.push(go.vpn(&paid("v-1", "vsub-1", "acc-1")).await);
    rows.push(
        go.vpn(&GoVpn {
            is_current: false,
            status: "converted".into(),
            created_at: Some(days_ago(60)),
            ..paid("v-1", "vsub-0", "acc-1")
        })
        .await,
    );
    go.log(rows[0], "hosting", "create", "node requested", days_ago(41))
        .await;
    go.log(
        Uuid::new_v4(),
        "hosting",
        "delete",
        "a row long gone",
        days_ago(90),
    )
    .await;
    rows
}

on_both! {
    async fn a_dry_run_changes_no_row_and_reports_what_the_import_then_does(b: Backend) {
        let app = prepared(b).await;
        let go = GoDb::new().await;
        mixed(&app, &go).await;
        let dry = import_ok(&app.db.url, &go, &["--dry-run"]).await;
        assert_eq!(dry["dry_run"], true);
        assert_eq!(dry["hosting"]["imported"], 5, "{dry}");
        for (table, filter) in [("resources", "true"), ("entitlements", "true"), ("legacy_imports", "true"),
            ("resource_events", "true"), ("outbox", "true"), ("regions", "code = 'xx'")] {
            assert_eq!(app.db.count(table, filter).await, 0, "{table}");
        }
        let real = import_ok(&app.db.url, &go, &[]).await;
        assert_eq!(real["dry_run"], false);
        let mut dry = dry;
        dry["dry_run"] = json!(false);
        assert_eq!(dry, real, "the dry run said what the import did");
        assert_eq!(app.db.count("resources", "true").await, 6);
    }
}

on_both! {
    async fn a_second_run_imports_nothing_twice_and_tells_the_same(b: Backend) {
        let app = prepared(b).await;
        let go = GoDb::new().await;
        mixed(&app, &go).await;
        let first = import_ok(&app.db.url, &go, &[]).await;
        let counts = app.db.row_counts().await;
        let second = import_ok(&app.db.url, &go, &[]).await;
        assert_eq!(app.db.row_counts().await, counts);
        assert_eq!(second["hosting"], json!({"read": 6, "imported": 0, "already_imported": 5,
            "refused": 1, "by_status": {}}));
        assert_eq!(first["hosting"]["imported"], 5);
        assert_eq!(second["vpn"], json!({"read": 2, "users": 0, "entitlements": 0,
            "already_imported": 2, "refused": 0}));
        assert_eq!(first["vpn"]["entitlements"], 2);
        assert_eq!(second["history"], json!({"imported": 0, "skipped": 1, "already_imported": 1}));
        assert_eq!(first["history"], json!({"imported": 1, "skipped": 1, "already_imported": 0}));
        assert_eq!(first["findings"], second["findings"]);
    }
}

on_both! {
    async fn a_lost_deletion_is_finished_and_reported_after_the_go_history(b: Backend) {
        let mut app = prepared(b).await;
        let go = GoDb::new().await;
        let vps = go_vps(&app, "u-s", "sub-s");
        let id = go.node(&bare("u-s", "sub-s", "stopping", &vps)).await;
        // Logged out of order in the table: history is by the Go service's time.
        go.log(id, "hosting", "delete", "deprovision requested", days_ago(2)).await;
        go.log(id, "hosting", "create", "node requested", days_ago(40)).await;
        let report = import_ok(&app.db.url, &go, &[]).await;
        assert_eq!(findings_of(&report, id), ["lost_deletion"]);
        assert_eq!(report["history"]["imported"], 2);

        app.start().await;
        app.wait_status(&id.to_string(), "deleted").await;
        let callbacks = app.wait_callbacks("sub-s", 1).await;
        assert_eq!(callbacks.len(), 1);
        assert_eq!((callbacks[0].status.as_str(), callbacks[0].resource_id.as_deref()),
            ("deleted", Some(id.to_string().as_str())));
        assert!(app.sims.sim.hosting.node(&vps).is_none(), "the VPS is gone");
        let history = events(&app, id).await;
        let said: Vec<(&str, &str)> = history.iter()
            .map(|e| (e["actor"].as_str().unwrap(), e["kind"].as_str().unwrap())).collect();
        assert_eq!(&said[..3], [("legacy", "legacy"), ("legacy", "legacy"), ("import", "legacy")]);
        assert!(history[0]["message"].as_str().unwrap().starts_with("create: ok: node requested"), "{history:?}");
        assert!(history[1]["message"].as_str().unwrap().contains("deprovision requested"));
        assert!(said[3..].iter().all(|(actor, _)| *actor != "legacy"));
        assert!(said.contains(&("engine", "deleted")), "{said:?}");
    }
}

on_both! {
    async fn an_unfinished_creation_adopts_its_vps_and_creates_only_for_a_row_that_named_none(b: Backend) {
        let mut app = prepared(b).await;
        let go = GoDb::new().await;
        // A VPS still coming up, named by its row.
        let coming = go_vps(&app, "u-c", "sub-c");
        app.sims.sim.hosting.set_coming_up(&coming, chrono::Duration::milliseconds(600));
        let named = go.node(&GoNode { created_at: days_ago(200), ..bare("u-c", "sub-c", "creating", &coming) }).await;
        // A VPS the Go service asked for but never recorded (its row says '').
        let unrecorded = go_vps(&app, "u-i", "sub-i");
        let found = go.node(&bare("u-i", "sub-i", "installing", "")).await;
        // Nothing made at all.
        let nothing = go.node(&bare("u-p", "sub-p", "pending", "")).await;
        // A VPS whose agent (installed by the Go service) reports ready itself.
        let slow = go_vps(&app, "u-r", "sub-r");
        app.sims.sim.hosting.set_coming_up(&slow, chrono::Duration::minutes(10));
        let reporting = go.node(&bare("u-r", "sub-r", "installing", &slow)).await;
        let report = import_ok(&app.db.url, &go, &[]).await;
        for id in [named, found, nothing, reporting] {
            assert_eq!(findings_of(&report, id), ["unfinished_creation"]);
        }
        app.start().await;
        // The agent knows its row's id as the Go service gave it, and the shared secret.
        let ready = json!({"resource_id": reporting.to_string(), "public_ip": "192.0.2.44",
            "api_key": "agent-44", "vless_port": 443, "ss_port": 8388, "public_key": "pk44", "short_id": "s44"});
        let (status, body) = app.internal(Method::POST, "/api/callback/node/ready", Some(ready)).await;
        assert_eq!(status, 200, "{body}");
        let r = app.wait_status(&reporting.to_string(), "active").await;
        assert_eq!((r["public_ip"].as_str(), r["api_key"].as_str()), (Some("192.0.2.44"), Some("agent-44")));
        assert_eq!(app.wait_callbacks("sub-r", 1).await[0].status.as_str(), "active");
        for (id, sub) in [(named, "sub-c"), (found, "sub-i"), (nothing, "sub-p")] {
            let r = app.wait_status(&id.to_string(), "active").await;
            let callbacks = app.wait_callbacks(sub, 1).await;
            assert_eq!((callbacks[0].status.as_str(), callbacks.len()), ("active", 1), "{r}");
        }
        let creates = app.sims.sim.hosting.creates();
        assert_eq!(creates.len(), 1, "{creates:?}");
        assert_eq!(creates[0].resource_id, nothing.to_string());
        assert_eq!(app.resource(&named.to_string()).await["public_ip"], "203.0.113.254");
        assert!(app.sims.sim.hosting.node(&unrecorded).is_some());
        let (_, doc) = app.internal(Method::GET, &format!("/api/internal/resources/{found}/events"), None).await;
        assert!(doc.to_string().contains(&unrecorded), "adopted {unrecorded}: {doc}");
        assert!(app.sims.sim.hosting.deletes().is_empty());
    }
}

on_both! {
    async fn duplicate_live_rows_are_kept_and_flagged_over_node_limit(b: Backend) {
        let mut app = prepared(b).await;
        let go = GoDb::new().await;
        let (v1, v2) = (go_vps(&app, "u-d", "sub-d"), go_vps(&app, "u-d", "sub-d"));
        let older = go.node(&GoNode { created_at: days_ago(50), ..active("u-d", "sub-d", &v1) }).await;
        let newer = go.node(&GoNode { created_at: days_ago(10), ..active("u-d", "sub-d", &v2) }).await;
        let report = import_ok(&app.db.url, &go, &[]).await;
        let dup: Vec<&Value> = report["findings"].as_array().unwrap().iter()
            .filter(|f| f["kind"] == "duplicate_live_nodes").collect();
        assert_eq!(dup.len(), 1);
        assert_eq!(dup[0]["ids"], json!([older.to_string(), newer.to_string()]));
        assert_eq!(dup[0]["subscription_id"], "sub-d");

        app.sims.subscribe("u-d", "sub-d", "premium");
        app.start().await;
        let (_, queue) = app.internal(Method::GET, "/api/internal/operator/queue", None).await;
        assert_eq!(queue["subscriptions"], json!([{"subscription_id": "sub-d", "user_id": "u-d",
            "why": "over_node_limit", "live_nodes": 2, "node_limit": 1}]));
        let (_, doc) = app.user(Method::GET, "/api/v1/my/node", "u-d", None).await;
        assert_eq!(doc["node"]["resource_id"], older.to_string(), "the oldest is the one /my/node shows");
        let (_, list) = app.user(Method::GET, "/api/v1/my/nodes", "u-d", None).await;
        assert_eq!(list["nodes"].as_array().unwrap().len(), 2);
        let (status, body) = app.user(Method::POST, "/api/v1/my/nodes", "u-d", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("node_limit_reached")));
        // A retried delivery of the Go service's order creates nothing more.
        let (status, _) = app.provision("u-d", "sub-d").await;
        assert_eq!(status, 200);
        app.settle().await;
        nothing_asked_upstream(&app);
        assert_eq!(app.sims.sim.hosting.obox_nodes().len(), 2);
    }
}

on_both! {
    async fn vpn_accounts_keep_their_uuid_and_the_vpn_managers_terms_win(b: Backend) {
        let mut app = prepared(b).await;
        let go = GoDb::new().await;
        let expiry = (chrono::Utc::now() + chrono::Duration::days(40)).with_nanosecond(0).unwrap();
        app.sims.sim.vpn.add_user(SimVpnUser {
            uuid: "acc-v1".into(), email: "v-1@example.com".into(), auth_user_id: "v-1".into(),
            protocols: vec!["vless".into()], ss_password: "pw".into(),
            traffic_limit: 600 * (1 << 30), traffic_used: 3 * (1 << 30), expire_at: expiry,
            enabled: true, service_tier: "premium".into(),
        });
        let old = go.vpn(&GoVpn { is_current: false, status: "converted".into(), created_at: Some(days_ago(90)),
            ..paid("v-1", "vsub-0", "acc-v1") }).await;
        let gift = go.vpn(&GoVpn { business_type: "gift".into(), channel: Some("gift".into()),
            subscription_id: None, created_at: Some(days_ago(30)), note: Some("welcome\nback".into()),
            ..paid("v-1", "", "acc-v1") }).await;
        // The row /my/vpn showed; its expiry is stale (the Go service renewed upstream only).
        let current = go.vpn(&paid("v-1", "vsub-1", "acc-v1")).await;
        let report = import_ok(&app.db.url, &go, &[]).await;
        assert_eq!(report["vpn"], json!({"read": 3, "users": 1, "entitlements": 3,
            "already_imported": 0, "refused": 0}));
        assert_eq!(findings_of(&report, current), ["several_current_vpn_rows"]);
        assert_eq!(findings_of(&report, gift), ["several_current_vpn_rows"]);
        assert!(findings_of(&report, old).is_empty());

        app.sims.subscribe_vpn("v-1", "vsub-1", "premium");
        app.start().await;
        let want = expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let shown = wait_until(Duration::from_secs(10), || async {
            let (_, doc) = app.user(Method::GET, "/api/v1/my/vpn", "v-1", None).await;
            doc["vpn_user"]["expire_at"] == json!(want)
        }).await;
        let (_, last) = app.user(Method::GET, "/api/v1/my/vpn", "v-1", None).await;
        assert!(shown, "the VPN manager's expiry wins within one sync: {last}");
        assert_eq!(last["vpn_status"], "active");
        assert_eq!(last["vpn_user"]["resource_id"], current.to_string());
        assert_eq!(last["vpn_user"]["vpn_user_id"], "acc-v1");
        assert_eq!(last["vpn_user"]["traffic_limit_gb"], 600);
        assert_eq!(last["vpn_user"]["traffic_used_gb"], 3);
        let (status, sub) = app.user(Method::GET, "/api/v1/my/vpn/subscribe", "v-1", None).await;
        assert_eq!(status, 200, "{sub}");
        let (_, list) = app.internal(Method::GET, "/api/internal/entitlements?user_id=v-1", None).await;
        let list = list["entitlements"].as_array().unwrap().clone();
        assert_eq!(list.len(), 3);
        let current_of: Vec<&Value> = list.iter().filter(|e| e["current"] == true).collect();
        assert_eq!(current_of.len(), 1, "{list:?}");
        assert_eq!(current_of[0]["entitlement_id"], current.to_string());
        let sim = &app.sims.sim.vpn;
        assert!(sim.creates().is_empty() && sim.updates().is_empty() && sim.deletes().is_empty(),
            "the VPN manager is not written: {:?} {:?}", sim.creates(), sim.updates());
        assert_eq!(sim.user("acc-v1").unwrap().expire_at, expiry);
    }
}

on_both! {
    async fn a_legacy_trial_still_blocks_a_second_trial_on_its_device(b: Backend) {
        let mut app = prepared(b).await;
        let go = GoDb::new().await;
        go.vpn(&trial("t-1", "dev-9", "acc-t1")).await;
        import_ok(&app.db.url, &go, &[]).await;
        app.start().await;
        let trial = |user: &str, device: &str| json!({"user_id": user, "subscription_id": format!("ts-{user}"),
            "app_source": "otun", "plan_tier": "basic", "channel": "trial", "business_type": "trial",
            "expire_days": 3, "device_id": device, "user_email": format!("{user}@example.net")});
        for (order, why) in [(trial("t-2", "dev-9"), "same device"), (trial("t-1", "dev-2"), "same user")] {
            let (status, body) = app.internal(Method::POST, "/api/internal/provision", Some(order)).await;
            assert_eq!((status, body["code"].as_str()), (409, Some("trial_already_used")), "{why}: {body}");
        }
        let (status, _) = app.internal(Method::POST, "/api/internal/provision", Some(trial("t-3", "dev-3"))).await;
        assert_eq!(status, 200);
    }
}

on_both! {
    async fn rows_breaking_our_rules_are_refused_one_by_one(b: Backend) {
        let app = prepared(b).await;
        let go = GoDb::new().await;
        let good = go.node(&active("u-g", "sub-g", "g-1")).await;
        let gold = go.node(&GoNode { plan_tier: "gold".into(), ..active("u-g2", "sub-g2", "g-2") }).await;
        let escape = go.node(&active("u-e", "sub\u{1b}[31m", "g-3")).await;
        let no_sub = go.node(&active("u-n", "", "g-4")).await;
        let paid_row = go.vpn(&paid("v-1", "vs-1", "acc-1")).await;
        let no_plan = go.vpn(&GoVpn { plan_tier: None, ..paid("v-2", "vs-2", "acc-2") }).await;
        let first_trial = go.vpn(&GoVpn { created_at: Some(days_ago(30)), ..trial("v-3", "dev-1", "acc-3") }).await;
        let second_trial = go.vpn(&trial("v-4", "dev-1", "acc-4")).await;
        let report = import_ok(&app.db.url, &go, &[]).await;
        assert_eq!((report["hosting"]["imported"].as_i64(), report["hosting"]["refused"].as_i64()), (Some(1), Some(3)));
        assert_eq!((report["vpn"]["entitlements"].as_i64(), report["vpn"]["refused"].as_i64()), (Some(2), Some(2)));
        let refusal = |id: Uuid| {
            let f: Vec<&Value> = report["findings"].as_array().unwrap().iter()
                .filter(|f| f["kind"] == "refused_row" && f["ids"] == json!([id.to_string()])).collect();
            assert_eq!(f.len(), 1, "{id}: {report}");
            f[0]["detail"].as_str().unwrap().to_owned()
        };
        assert!(refusal(gold).contains("gold"));
        assert!(refusal(escape).contains("subscription_id contains control characters"));
        assert!(refusal(no_sub).contains("subscription_id is required"));
        assert!(refusal(no_plan).contains("plan_tier is empty"));
        assert!(refusal(second_trial).contains("device \"dev-1\" already had a trial"));
        for id in [good, paid_row, first_trial] {
            assert!(findings_of(&report, id).is_empty(), "{id}");
            let (table, column) = if id == good { ("resources", "id") } else { ("entitlements", "id") };
            assert_eq!(app.db.count(table, &format!("{column} = '{id}'")).await, 1);
        }
        for id in [gold, escape, no_sub, no_plan, second_trial] {
            assert_eq!(app.db.count("legacy_imports", &format!("legacy_id = '{id}'")).await, 0);
        }
        assert_eq!(app.db.count("resources", "true").await, 3);
    }
}

on_both! {
    async fn a_missing_table_or_column_is_an_error_by_name_and_nothing_is_written(b: Backend) {
        let app = prepared(b).await;
        for (breaks, named) in [
            ("drop table fulfillment.provision_logs", "fulfillment.provision_logs"),
            ("alter table fulfillment.hosting_provisions drop column ss_port", "ss_port"),
            ("drop table fulfillment.vpn_provisions", "fulfillment.vpn_provisions"),
        ] {
            let go = GoDb::new().await;
            go.node(&active("u-1", "sub-1", "n-1")).await;
            go.region("xx-legacy-1", "Nowhere", None).await;
            go.exec(breaks).await;
            let run = import(&app.db.url, &go, &["--json"]).await;
            assert_eq!(run.code, Some(1), "{run:?}");
            assert!(run.stderr.contains(named), "{named}: {}", run.stderr);
            assert!(run.stdout.is_empty(), "no report: {}", run.stdout);
            match b {
                // Not even our migrations ran: the file was never made.
                Backend::Sqlite => assert!(!std::path::Path::new(app.db.url.trim_start_matches("sqlite://")).exists()),
                Backend::Postgres => {
                    assert_eq!(app.db.count("resources", "true").await, 0);
                    assert_eq!(app.db.count("regions", "code = 'xx-legacy-1'").await, 0);
                }
            }
        }
        // A database that never ran the Go service's migration 007 has no needs_cleanup.
        let go = GoDb::new().await;
        let id = go.node(&bare("u-1", "sub-1", "failed", "n-1")).await;
        go.exec("alter table fulfillment.hosting_provisions drop column needs_cleanup").await;
        let report = import_ok(&app.db.url, &go, &[]).await;
        assert_eq!(report["hosting"]["by_status"], json!({"failed": 1}));
        assert_eq!(app.db.count("resources", &format!("id = '{id}' and upstream_released")).await, 1);
    }
}

on_both! {
    async fn leaked_vpses_are_swept_and_live_ones_are_not(b: Backend) {
        let mut app = prepared(b).await;
        let go = GoDb::new().await;
        let failed_vps = go_vps(&app, "u-f", "sub-f");
        let failed = go.node(&GoNode { error_message: Some("agent never came up".into()),
            ..bare("u-f", "sub-f", "failed", &failed_vps) }).await;
        let deleted_vps = go_vps(&app, "u-x", "sub-x");
        go.node(&GoNode { deleted_at: Some(days_ago(9)), ..bare("u-x", "sub-x", "deleted", &deleted_vps) }).await;
        // The Go service knew it failed to delete this one.
        let cleanup_vps = go_vps(&app, "u-c", "sub-c");
        let cleanup = go.node(&GoNode { needs_cleanup: true, ..bare("u-c", "sub-c", "deleted", &cleanup_vps) }).await;
        // A deleted row and an active row naming the same VPS: it serves.
        let live_vps = go_vps(&app, "u-a", "sub-a");
        go.node(&GoNode { created_at: days_ago(60), ..bare("u-a", "sub-a", "deleted", &live_vps) }).await;
        go.node(&active("u-a", "sub-a", &live_vps)).await;
        // A VPS of ours no imported row names (another deployment's?): left alone.
        let stranger = go_vps(&app, "u-z", "sub-z");
        let odd = go.node(&bare("u-o", "sub-o", "hibernating", "")).await;
        let report = import_ok(&app.db.url, &go, &[]).await;
        assert_eq!(findings_of(&report, cleanup), ["vps_to_clean_up"]);
        assert_eq!(findings_of(&report, odd), ["unknown_status"]);

        app.start().await;
        let gone = wait_until(Duration::from_secs(15), || async {
            let h = &app.sims.sim.hosting;
            [&failed_vps, &deleted_vps, &cleanup_vps].iter().all(|v| h.node(v).is_none())
        }).await;
        assert!(gone, "leaked: {:?}", app.sims.sim.hosting.obox_nodes().iter().map(|n| &n.node_id).collect::<Vec<_>>());
        assert!(app.sims.sim.hosting.node(&live_vps).is_some(), "the serving VPS stays");
        assert!(app.sims.sim.hosting.node(&stranger).is_some(), "an unknown VPS stays");
        assert_eq!(app.resource(&failed.to_string()).await["status"], "failed");
        assert_eq!(app.resource(&cleanup.to_string()).await["status"], "deleted");
        let history = events(&app, failed).await;
        assert!(history.iter().any(|e| e["kind"] == "orphan_deleted" && e["message"] == json!(failed_vps)), "{history:?}");
        let (_, odd_doc) = app.internal(Method::GET, &format!("/api/internal/resources/{odd}"), None).await;
        assert!(odd_doc["error_message"].as_str().unwrap().contains("hibernating"));
        let (_, queue) = app.internal(Method::GET, "/api/internal/operator/queue", None).await;
        assert!(queue.to_string().contains(&odd.to_string()), "{queue}");
        assert!(app.sims.sim.subscriptions.callbacks().is_empty(), "no callback for any of it");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(app.sims.sim.hosting.node(&live_vps).is_some() && app.sims.sim.hosting.node(&stranger).is_some());
    }
}

/// Makes `hosting` hosting rows, `users` VPN users (two rows each) and three log rows per
/// hosting row, in SQL (some of each refused).
async fn large(go: &GoDb, hosting: i64, users: i64) {
    go.exec(&format!(
        "insert into fulfillment.hosting_provisions (subscription_id, user_id, hosting_node_id, \
         provider, region, public_ip, api_port, api_key, status, plan_tier, created_at, updated_at) \
         select 'sub-' || (i / 2), 'u-' || (i / 2), 'vps-' || i, 'lightsail', 'us-east-1', \
         '198.51.100.1', 8080, 'k', case when i % 10 = 0 then 'deleted' else 'active' end, \
         case when i % 97 = 0 then 'gold' else 'premium' end, now() - (i || ' minutes')::interval, now() \
         from generate_series(1, {hosting}) i;
         insert into fulfillment.vpn_provisions (user_id, subscription_id, business_type, service_tier, \
         otun_uuid, plan_tier, status, expire_at, is_current, created_at) \
         select 'v-' || (i / 2), 'vs-' || i, 'subscription', 'premium', 'acc-' || (i / 2), \
         case when i % 89 = 0 then '' else 'premium' end, case when i % 2 = 0 then 'converted' else 'active' end, \
         now() + interval '9 days', i % 2 = 1, now() - (i || ' seconds')::interval \
         from generate_series(1, {}) i;
         insert into fulfillment.provision_logs (provision_id, provision_type, action, status, message, created_at) \
         select id, 'hosting', 'step', 'ok', 'n' || k, created_at + (k || ' seconds')::interval \
         from fulfillment.hosting_provisions, generate_series(1, 3) k;",
        users * 2
    ))
    .await;
}

/// Waits until `count` reaches `at_least`, then kills the child.
async fn kill_when(
    child: &mut std::process::Child,
    db: &TestDb,
    table: &str,
    filter: &str,
    at_least: i64,
) {
    let reached = wait_until(Duration::from_secs(60), || async {
        db.count(table, filter).await >= at_least
    })
    .await;
    assert!(reached, "the import reached {at_least} rows of {table}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "killed mid-way, not after it finished"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

on_both! {
    async fn an_import_killed_midway_finishes_on_the_next_run_with_every_row_once(b: Backend) {
        let db = TestDb::new(b).await;
        let go = GoDb::new().await;
        let (hosting, users) = (6_000, 3_000);
        large(&go, hosting, users).await;
        // Our schema first, so the counts below can be read from the start.
        drop(db.store().await);
        let spawn = || {
            std::process::Command::new(env!("CARGO_BIN_EXE_fulfillment"))
                .args(["import-legacy", "--from", &go.url])
                .env_clear()
                .envs(crate::legacy_fixture::import_env(&db.url))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        // SIGKILL in the hosting pass, then in the log pass.
        let mut child = spawn();
        kill_when(&mut child, &db, "legacy_imports", "true", 1_000).await;
        let mut child = spawn();
        kill_when(&mut child, &db, "resource_events", "kind = 'legacy' and actor = 'legacy'", 2_000).await;
        let report = import_ok(&db.url, &go, &[]).await;

        let refused_hosting = (1..=hosting).filter(|i| i % 97 == 0).count() as i64;
        let refused_vpn = (1..=users * 2).filter(|i| i % 89 == 0).count() as i64;
        let h = &report["hosting"];
        assert_eq!(h["read"], hosting);
        assert_eq!(h["imported"].as_i64().unwrap() + h["already_imported"].as_i64().unwrap() + h["refused"].as_i64().unwrap(), hosting);
        assert_eq!(h["refused"], refused_hosting);
        let v = &report["vpn"];
        assert_eq!(v["read"], users * 2);
        assert_eq!(v["entitlements"].as_i64().unwrap() + v["already_imported"].as_i64().unwrap() + v["refused"].as_i64().unwrap(), users * 2);
        let hi = &report["history"];
        assert_eq!(hi["imported"].as_i64().unwrap() + hi["already_imported"].as_i64().unwrap(), (hosting - refused_hosting) * 3);
        assert_eq!(hi["skipped"], refused_hosting * 3);
        // Every row exactly once.
        assert_eq!(db.count("resources", "resource_type = 'hosting_node'").await, hosting - refused_hosting);
        assert_eq!(db.count("entitlements", "true").await, users * 2 - refused_vpn);
        assert_eq!(db.count("legacy_imports", "true").await, hosting - refused_hosting + users * 2 - refused_vpn);
        assert_eq!(db.count("resources", "resource_type = 'vpn_user'").await, users + 1, "one per user (v-0 to v-{users})");
        assert_eq!(db.count("resource_events", "actor = 'legacy'").await, (hosting - refused_hosting) * 3);
        // Rows taken as they were (active, deleted, accounts that exist) get no entry of
        // the import's own: their Go history says it.
        assert_eq!(db.count("resource_events", "actor = 'import'").await, 0);
        // Each subscription's two live nodes in slots 1 and 2, never twice in one.
        assert_eq!(db.count("resources", "resource_type = 'hosting_node' and status = 'active' and slot > 2").await, 0);
        let again = import_ok(&db.url, &go, &[]).await;
        assert_eq!((again["hosting"]["imported"].as_i64(), again["vpn"]["entitlements"].as_i64(), again["history"]["imported"].as_i64()), (Some(0), Some(0), Some(0)));
    }
}

#[tokio::test]
async fn usage_errors_exit_2_and_touch_nothing() {
    let go = GoDb::new().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fulfillment"));
        cmd.arg("import-legacy").args(args).env_clear().envs(env);
        let dir = std::env::temp_dir().join(format!("ft-import-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        cmd.current_dir(&dir);
        (cmd.output().unwrap(), dir)
    };
    let env = crate::legacy_fixture::import_env(&db.url);
    let from = |extra: &[&str]| {
        let mut a = vec!["--from".to_owned(), go.url.clone()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    for (args, env, says) in [
        (vec![], env.clone(), "--from"),
        (
            from(&["--schema", "x; drop table y"]),
            env.clone(),
            "schema",
        ),
        (from(&["--dry-rub"]), env.clone(), "--dry-rub"),
        // Nothing configured: the import would land in the demo's SQLite file.
        (from(&[]), vec![], "DB_URL"),
    ] {
        let (out, dir) = run(args.clone(), env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no demo file made"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
    assert!(!std::path::Path::new(db.url.trim_start_matches("sqlite://")).exists());
}

on_both! {
    async fn trials_colliding_across_batches_written_side_by_side_are_refused_not_doubled(b: Backend) {
        let db = TestDb::new(b).await;
        let go = GoDb::new().await;
        // 40 users, each with one trial; every device and every email is used by 4 of
        // them, so most collisions are between batches (of 3 rows: about 14 batches).
        for i in 0..40 {
            let user = format!("t-{i:02}");
            let row = GoVpn {
                email: Some(format!("shared-{}@example.com", i % 10)),
                created_at: Some(days_ago(60 - i)),
                ..trial(&user, &format!("dev-{}", i % 10), &format!("acc-{i}"))
            };
            go.vpn(&row).await;
        }
        let report = import_ok(&db.url, &go, &["--batch-rows", "3"]).await;
        assert_eq!((report["vpn"]["entitlements"].as_i64(), report["vpn"]["refused"].as_i64()), (Some(10), Some(30)), "{report}");
        assert_eq!(db.count("entitlements", "is_trial").await, 10);
        for i in 0..10 {
            assert_eq!(db.count("entitlements", &format!("device_id = 'dev-{i}'")).await, 1);
        }
        // The oldest row of each device had its trial (users are read in order).
        assert_eq!(db.count("entitlements", "user_id in ('t-00', 't-01', 't-09')").await, 3);
    }
}
