-- Traffic by period (CONTRACTS.md §4.8). Beside its all-time count (traffic_used), a node
-- keeps what it used in the month of its last report: period_start names the month by its
-- first day, period_used is its bytes. A read in a later month shows 0 until the node
-- reports in it. Neither column is indexed, so a node report's update stays heap-only.
alter table resources add column period_start date;
alter table resources add column period_used bigint not null default 0;

-- A node's use by UTC day (the day a report was taken), for the usage charts. A report
-- adds its growth to its day's row in the transaction that records it, so a month's rows
-- add up to its period_used. The retention job deletes rows older than
-- USAGE_RETENTION_DAYS.
create table node_usage_days (
    resource_id text not null,
    day date not null,
    rx_bytes bigint not null default 0,
    tx_bytes bigint not null default 0,
    primary key (resource_id, day)
);
create index node_usage_days_by_day on node_usage_days (day);

-- VPN_TRAFFIC_RESET=on_renewal: the version of a VPN account's terms whose push also sets
-- its traffic_used to 0 at the VPN manager (a renewal's; 0: none). While it is above
-- applied_version, every push of the terms carries the reset.
alter table resources add column traffic_reset_version bigint not null default 0;
