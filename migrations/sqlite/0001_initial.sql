-- Regions a node can be created in.
create table regions (
    code text primary key,
    name text not null,
    provider text not null,
    available boolean not null default 1,
    sort_order integer not null default 0
);

insert into regions (code, name, provider, sort_order) values
    ('us-east-1', 'US East (Virginia)', 'lightsail', 1),
    ('us-west-2', 'US West (Oregon)', 'lightsail', 2),
    ('ap-northeast-1', 'Asia Pacific (Tokyo)', 'lightsail', 3),
    ('ap-southeast-1', 'Asia Pacific (Singapore)', 'lightsail', 4),
    ('eu-west-1', 'Europe (Ireland)', 'lightsail', 5);

-- One row per thing a customer paid for: what it should be (desired_state) and what it is
-- (status), plus the reconciler's bookkeeping (lease, schedule, attempts, deadline).
create table resources (
    id text primary key,
    resource_type text not null check (resource_type in ('hosting_node', 'vpn_user')),
    subscription_id text not null,
    user_id text not null check (length(user_id) between 1 and 256),
    user_email text,
    order_key text not null,
    provider text not null,
    region text not null,
    plan_tier text not null,
    status text not null
        check (status in ('pending', 'creating', 'active', 'failed', 'deleting', 'deleted')),
    desired_state text not null check (desired_state in ('active', 'deleted')),
    generation bigint not null default 0,
    delete_reason text,
    node_id text,
    phase integer not null default 1,
    public_ip text,
    api_port integer,
    api_key text,
    vless_port integer,
    ss_port integer,
    public_key text,
    short_id text,
    traffic_limit bigint not null default 0,
    traffic_used bigint not null default 0,
    error_message text,
    last_error text,
    attempts integer not null default 0,
    upstream_released boolean not null default 0,
    callback_token_hash text,
    deadline_at text,
    next_attempt_at text,
    lease_owner text,
    lease_until text,
    created_at text not null,
    updated_at text not null,
    ready_at text
);

-- At most one live hosting node per subscription and per user: a repeated or concurrent
-- order finds the existing row instead of creating a second (billed) VPS.
create unique index resources_one_live_node_per_subscription on resources (subscription_id)
    where resource_type = 'hosting_node' and desired_state = 'active' and status <> 'deleted';
create unique index resources_one_live_node_per_user on resources (user_id)
    where resource_type = 'hosting_node' and desired_state = 'active' and status <> 'deleted';
create index resources_due on resources (next_attempt_at) where next_attempt_at is not null;
create index resources_by_user on resources (user_id);
create index resources_by_subscription on resources (subscription_id);
create index resources_by_node on resources (node_id) where node_id is not null;

-- Append-only history of every transition: who, what, when, why.
create table resource_events (
    id integer primary key autoincrement,
    resource_id text not null references resources (id),
    kind text not null,
    actor text not null,
    message text,
    at text not null
);
create index resource_events_by_resource on resource_events (resource_id, id);

-- Callbacks to the subscription service, written in the same transaction as the status
-- change they report, delivered in id order per subscription until acknowledged.
create table outbox (
    id integer primary key autoincrement,
    subscription_id text not null,
    resource_id text,
    payload text not null,
    created_at text not null,
    attempts integer not null default 0,
    next_attempt_at text not null,
    lease_owner text,
    lease_until text,
    delivered_at text,
    last_error text
);
create index outbox_pending on outbox (subscription_id, id) where delivered_at is null;
create index outbox_due on outbox (next_attempt_at) where delivered_at is null;

-- The last answer of the subscription service per user and app, served while it is down.
create table subscription_snapshots (
    user_id text not null,
    app text not null,
    active boolean not null,
    body text,
    fetched_at text not null,
    primary key (user_id, app)
);

-- Idempotency-Key records for the internal API.
create table idempotency_keys (
    scope text not null,
    key text not null,
    fingerprint text not null,
    status_code integer,
    body text,
    created_at text not null,
    primary key (scope, key)
);
