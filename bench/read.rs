//! `read`: `GET /api/v1/my/node` under wrk against pgbench running the request's SQL.

use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fulfillment::api::extract::mint_user_token;

use crate::Args;
use crate::harness::*;

/// wrk's request script: every request for the next user's token, each thread starting
/// at its own place in the list.
pub(crate) const WRK_SCRIPT: &str = r#"
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local threads = 0
function setup(thread)
  thread:set("offset", threads * 4999)
  threads = threads + 1
end
local i = 0
function init(args)
  i = offset or 0
end
function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[i]})
end
"#;

/// A percentile from wrk's `--latency` distribution (`    99%   12.34ms`).
pub(crate) fn wrk_percentile(text: &str, which: &str) -> Duration {
    let value = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(which))
        .map(str::trim)
        .expect("wrk printed its latency distribution");
    let (number, unit) = value.split_at(
        value
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(value.len()),
    );
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    Duration::from_secs_f64(match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => f64::NAN,
    })
}

pub(crate) async fn read_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_read").await;
    seed_active_nodes(&db, args.users).await;
    let tokens: Arc<Vec<String>> = Arc::new(
        (1..=args.users)
            .map(|i| mint_user_token(JWT, &format!("bench-user-{i}"), Duration::from_secs(3600)))
            .collect(),
    );

    // Baseline: the request's SQL through pgbench at the same concurrency.
    let script = std::env::temp_dir().join(format!("bench-read-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "\\set uid random(1, {})\nselect id, resource_type, subscription_id, user_id, user_email, order_key, \
             provider, region, plan_tier, status, desired_state, generation, delete_reason, node_id, phase, \
             public_ip, api_port, api_key, vless_port, ss_port, public_key, short_id, traffic_limit, \
             traffic_used, error_message, attempts, upstream_released, deadline_at, next_attempt_at, \
             created_at, updated_at, ready_at from resources where resource_type = 'hosting_node' and \
             desired_state = 'active' and status <> 'deleted' and user_id = 'bench-user-' || :uid;\n",
            args.users
        ),
    )
    .unwrap();
    let c = args.concurrency.to_string();
    let t = args.secs.to_string();
    let baseline = pgbench(
        &db,
        &[
            "-n",
            "-M",
            "prepared",
            "-c",
            &c,
            "-j",
            "2",
            "-T",
            &t,
            "-f",
            script.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&script);

    // The service with its read model (the default), then without: every read a query.
    let on = read_phase(args, &db, &tokens, None).await;
    let off = read_phase(args, &db, &tokens, Some(0)).await;
    db.drop().await;

    let _ = writeln!(
        report,
        "### GET /api/v1/my/node ({} users with active nodes, PostgreSQL, {} connections, {} s)\n\n\
         | measure | read model on | read model off | target |\n|---|---|---|---|\n\
         | service | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms | p99 < 25 ms: {} |\n\
         | baseline: pgbench, the request's SQL | {baseline:.0} tx/s | | |\n\
         | ratio service / baseline | {:.2} | {:.2} | ≥ 0.5: {} |\n\
         | peak RSS of the service | {:.1} MB | {:.1} MB | < 100 MB: {} |\n",
        args.users,
        args.concurrency,
        args.secs,
        on.rps,
        on.p50 * 1e3,
        on.p99 * 1e3,
        off.rps,
        off.p50 * 1e3,
        off.p99 * 1e3,
        verdict(on.p99 < 0.025),
        on.rps / baseline,
        off.rps / baseline,
        verdict(on.rps / baseline >= 0.5),
        on.rss,
        off.rss,
        verdict(on.rss < 100.0),
    );
}

/// What one timed phase of `read` measured.
struct ReadPhase {
    rps: f64,
    /// Seconds.
    p50: f64,
    p99: f64,
    /// Peak RSS in MB.
    rss: f64,
}

/// Starts the service (with `READ_MODEL_USERS` = `users` when given), warms it with one
/// request per user (the subscription cache's and the read model's steady state), and
/// runs wrk against `GET /my/node` with one token per user.
async fn read_phase(
    args: &Args,
    db: &Db,
    tokens: &Arc<Vec<String>>,
    users: Option<usize>,
) -> ReadPhase {
    let mut cfg = config(&db.url);
    if let Some(n) = users {
        cfg.app.read_model_users = n;
    }
    let running = start_with(sim(false), cfg).await;
    let base = format!("http://{}", running.addr);
    let http = fulfillment::upstream::http_client(Duration::from_secs(10));
    let url = format!("{base}/api/v1/my/node");
    let per = args.users.div_ceil(args.concurrency);
    let warm: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let (http, url, tokens) = (http.clone(), url.clone(), tokens.clone());
            tokio::spawn(async move {
                for t in tokens.iter().skip(w * per).take(per) {
                    let r = http.get(&url).bearer_auth(t).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let body: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(body["hosting_status"], "node_active");
                }
            })
        })
        .collect();
    futures::future::join_all(warm).await;

    // wrk: a separate, lean load generator.
    let dir = std::env::temp_dir();
    let token_file = dir.join(format!("bench-tokens-{}.txt", std::process::id()));
    std::fs::write(&token_file, tokens.join("\n")).unwrap();
    let lua = dir.join(format!("bench-read-{}.lua", std::process::id()));
    std::fs::write(&lua, WRK_SCRIPT).unwrap();
    reset_peak_rss();
    let out = Command::new("wrk")
        .args([
            "-t",
            "2",
            "-c",
            &args.concurrency.to_string(),
            "-d",
            &format!("{}s", args.secs),
            "--latency",
            "-s",
        ])
        .arg(&lua)
        .arg(&url)
        .env("BENCH_TOKENS", &token_file)
        .output()
        .expect("wrk is installed (bench/run installs it)");
    let _ = std::fs::remove_file(&token_file);
    let _ = std::fs::remove_file(&lua);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Non-2xx"),
        "every request must succeed:\n{text}"
    );
    let rss = peak_rss_mb();
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("wrk printed Requests/sec");
    let (p50, p99) = (wrk_percentile(&text, "50%"), wrk_percentile(&text, "99%"));
    running.stop().await;
    ReadPhase {
        rps,
        p50: p50.as_secs_f64(),
        p99: p99.as_secs_f64(),
        rss,
    }
}
