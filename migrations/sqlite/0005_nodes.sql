-- Several nodes per hosting subscription, and replacing a node's VPS (migration).

-- A live hosting node holds a numbered slot of its subscription, 1..N where N is the
-- quantity paid for: at most N live nodes is a unique index, not a read-then-insert.
alter table resources add column slot integer;
update resources set slot = 1
    where resource_type = 'hosting_node' and desired_state = 'active' and status <> 'deleted';
drop index resources_one_live_node_per_subscription;
drop index resources_one_live_node_per_user;
create unique index resources_one_live_node_per_slot on resources (subscription_id, slot)
    where resource_type = 'hosting_node' and desired_state = 'active' and status <> 'deleted';

-- Hosting orders by identity: a repeat changes nothing; the latest one's quantity is the
-- subscription's node limit.
create table hosting_orders (
    seq integer primary key,
    order_key text not null unique,
    subscription_id text not null,
    user_id text not null,
    quantity integer not null check (quantity between 1 and 1000),
    plan_tier text not null,
    created_at text not null
);
create index hosting_orders_latest on hosting_orders (subscription_id, seq);

-- A replacement VPS being prepared for a live node (region migration, plan change,
-- rebuild), and the VPS a switch retired, deleted until gone.
alter table resources add column migration_status text check (migration_status in
    ('requested', 'creating', 'installing', 'switching', 'failing', 'failed', 'cancelling'));
alter table resources add column migration_region text;
alter table resources add column migration_plan_tier text;
alter table resources add column migration_node_id text;
alter table resources add column migration_token_hash text;
alter table resources add column migration_started_at text;
alter table resources add column migration_deadline_at text;
alter table resources add column migration_error text;
alter table resources add column migration_actor text;
alter table resources add column retire_node_id text;
-- The plan a hosting order asked for while the node was still coming up: once it is
-- active, it migrates to it.
alter table resources add column plan_wanted text;
create index resources_by_migration_node on resources (migration_node_id)
    where migration_node_id is not null;
create index resources_by_retired_node on resources (retire_node_id)
    where retire_node_id is not null;
