-- VPN users, entitlements, traffic metering.

-- A VPN user resource carries what must be true at the VPN manager (`spec_version` counts
-- changes to it; `applied_version` is the last one the VPN manager confirmed).
alter table resources add column vpn_user_id text;
alter table resources add column expire_at timestamptz;
alter table resources add column service_tier text;
alter table resources add column spec_version bigint not null default 0;
alter table resources add column applied_version bigint not null default 0;
alter table resources add column traffic_synced_at timestamptz;
-- A node agent's last cumulative counters, so a repeated, late or reset report is counted
-- once (see `record_node_stats`).
alter table resources add column counter_rx bigint not null default 0;
alter table resources add column counter_tx bigint not null default 0;
alter table resources add column stats_at timestamptz;
alter table resources add column load1 double precision;
alter table resources add column cpu_percent double precision;
alter table resources add column mem_percent double precision;

-- At most one live VPN user per user: the VPN manager keeps one account per user too.
create unique index resources_one_live_vpn_user_per_user on resources (user_id)
    where resource_type = 'vpn_user' and desired_state = 'active' and status <> 'deleted';
create index resources_vpn_sync on resources (id)
    where resource_type = 'vpn_user' and status = 'active' and desired_state = 'active';

-- One row per order (or gift) that granted VPN access. At most one is `current` per user;
-- a renewal or channel change demotes the old row (`superseded`) in the same transaction.
create table entitlements (
    id text primary key,
    user_id text not null check (length(user_id) between 1 and 256),
    resource_id text not null references resources (id),
    subscription_id text,
    order_key text,
    channel text not null,
    business_type text not null,
    plan_tier text not null,
    service_tier text not null,
    traffic_limit bigint not null,
    expire_at timestamptz not null,
    email text,
    device_id text,
    note text,
    is_trial boolean not null,
    is_current boolean not null,
    status text not null check (status in ('active', 'superseded', 'merged', 'cancelled')),
    spec_version bigint not null,
    reported boolean not null,
    created_at timestamptz not null,
    updated_at timestamptz not null
);
-- The same order delivered twice is recorded once.
create unique index entitlements_one_per_order on entitlements (order_key)
    where order_key is not null;
create unique index entitlements_one_current_per_user on entitlements (user_id) where is_current;
-- One trial per user, per device and per email, ever.
create unique index entitlements_one_trial_per_user on entitlements (user_id) where is_trial;
create unique index entitlements_one_trial_per_device on entitlements (device_id)
    where is_trial and device_id is not null;
create unique index entitlements_one_trial_per_email on entitlements (lower(email))
    where is_trial and email is not null;
create index entitlements_by_subscription on entitlements (subscription_id);
create index entitlements_by_resource on entitlements (resource_id, spec_version);

-- Periodic jobs that one replica at a time runs (traffic sync), leased like resources.
create table jobs (
    name text primary key,
    next_run_at timestamptz not null,
    lease_owner text,
    lease_until timestamptz,
    last_result text
);
