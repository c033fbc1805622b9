//! The gauges of a scrape, in one statement over live rows (each part is served by a
//! partial index), and the per-node load view.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::SqlStore;
use super::error::corrupt;
use domain::{ResourceKind, Status};
use ports::store::{HOT_PERCENT, LoadSort, Monitoring, NodeLoadRow, Readings, StoreResult};

type ReadingRow = (String, String, String, i64, Option<DateTime<Utc>>);

/// A node's traffic in the period asked for: the parameter `$all` true counts all time,
/// else the tally of the period starting on `$start` (0 when the node's last report was in
/// an earlier one).
macro_rules! period_used {
    ($all:literal, $start:literal) => {
        concat!(
            "(case when ",
            $all,
            " then traffic_used when period_start = ",
            $start,
            " then period_used else 0 end)"
        )
    };
}

/// The gauges' one statement: `$1` now, `$2` the freshness cut-off, `$3` `HOT_PERCENT`,
/// `$4`/`$5` the period (see `period_used!`). Public for the scrape benchmark, which runs
/// it through pgbench as its baseline.
pub const READINGS: &str = concat!(
    "\
    select 'resources', resource_type, status, count(*), cast(null as timestamptz) \
    from resources where status <> 'deleted' group by resource_type, status \
    union all \
    select 'due', 'reconciler', '', count(*), null from resources \
    where next_attempt_at <= $1 and (lease_until is null or lease_until < $1) \
    union all \
    select 'due', 'outbox', '', count(*), null from outbox \
    where delivered_at is null and next_attempt_at <= $1 \
    union all \
    select 'pending', '', '', count(*), min(created_at) from outbox where delivered_at is null \
    union all \
    select 'nodes', case when stats_at >= $2 then 'fresh' else 'stale' end, \
    (case when cpu_percent > $3 then 'c' else '' end) || \
    (case when mem_percent > $3 then 'm' else '' end) || \
    (case when traffic_limit > 0 and ",
    period_used!("$4", "$5"),
    " * 100.0 > $3 * traffic_limit \
     then 't' else '' end), \
    count(*), null from resources \
    where status = 'active' and resource_type = 'hosting_node' group by 2, 3"
);

#[async_trait]
impl Monitoring for SqlStore {
    async fn readings(
        &self,
        now: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
        period: Option<NaiveDate>,
    ) -> StoreResult<Readings> {
        let rows: Vec<ReadingRow> = self
            .db
            .sql(READINGS)
            .bind(now)
            .bind(fresh_since)
            .bind(HOT_PERCENT)
            .bind(period.is_none())
            .bind(period)
            .fetch_all()
            .await?;
        let mut r = Readings::default();
        for (what, a, b, n, at) in rows {
            match (what.as_str(), a.as_str()) {
                ("resources", kind) => {
                    let kind = ResourceKind::parse(kind).map_err(corrupt)?;
                    let status = Status::parse(&b).map_err(corrupt)?;
                    r.resources.push((kind, status, n));
                }
                ("due", "reconciler") => r.due_resources = n,
                ("due", _) => r.due_callbacks = n,
                ("pending", _) => {
                    r.pending_callbacks = n;
                    r.oldest_pending = at;
                }
                ("nodes", freshness) => {
                    if freshness == "fresh" {
                        r.nodes_fresh += n;
                    } else {
                        r.nodes_stale += n;
                    }
                    for (flag, count) in [
                        ('c', &mut r.nodes_over.cpu),
                        ('m', &mut r.nodes_over.mem),
                        ('t', &mut r.nodes_over.traffic),
                    ] {
                        if b.contains(flag) {
                            *count += n;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(r)
    }

    async fn node_load(
        &self,
        sort: LoadSort,
        limit: i64,
        period: Option<NaiveDate>,
    ) -> StoreResult<Vec<NodeLoadRow>> {
        let order = match sort {
            LoadSort::Cpu => "cpu_percent",
            LoadSort::Mem => "mem_percent",
            LoadSort::Load => "load1",
            // Share of the limit used; a node never metered has no figure.
            LoadSort::Traffic => concat!(
                "case when traffic_limit > 0 and stats_at is not null then ",
                period_used!("$1", "$2"),
                " * 1.0 / traffic_limit end"
            ),
        };
        let mut sql = self
            .db
            .sql(concat!(
                "select id, user_id, region, public_ip, cpu_percent, mem_percent, load1, ",
                period_used!("$1", "$2"),
                " as traffic_used, traffic_limit, stats_at from resources \
             where status = 'active' and resource_type = 'hosting_node' order by "
            ))
            .bind(period.is_none())
            .bind(period);
        sql.push(order)
            .push(" desc nulls last, id limit ")
            .push_bind(limit);
        let rows: Vec<LoadRow> = sql.fetch_all().await?;
        Ok(rows.into_iter().map(NodeLoadRow::from).collect())
    }
}

#[derive(sqlx::FromRow)]
struct LoadRow {
    id: String,
    user_id: String,
    region: String,
    public_ip: Option<String>,
    cpu_percent: Option<f64>,
    mem_percent: Option<f64>,
    load1: Option<f64>,
    traffic_used: i64,
    traffic_limit: i64,
    stats_at: Option<DateTime<Utc>>,
}

impl From<LoadRow> for NodeLoadRow {
    fn from(r: LoadRow) -> Self {
        NodeLoadRow {
            resource_id: r.id,
            user_id: r.user_id,
            region: r.region,
            public_ip: r.public_ip,
            cpu_percent: r.cpu_percent,
            mem_percent: r.mem_percent,
            load1: r.load1,
            traffic_used: r.traffic_used,
            traffic_limit: r.traffic_limit,
            reported_at: r.stats_at,
        }
    }
}
