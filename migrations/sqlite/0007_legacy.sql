-- Taking over from the Go service (`fulfillment import-legacy`, CONTRACTS.md §5).

-- Which legacy row became what: a hosting row its resource (same id), a VPN row its
-- entitlement (same id) and its user's resource. A second run skips what is here. Written
-- only by the import, in the transaction that writes the resource, so it needs no foreign
-- key (whose check, a row lock on the resource per row, was two thirds of its cost).
create table legacy_imports (
    legacy_id text primary key,
    source text not null check (source in ('hosting', 'vpn')),
    resource_id text not null,
    imported_at timestamptz not null
);
create index legacy_imports_by_resource on legacy_imports (resource_id);

-- A history entry copied from the Go service's `provision_logs`: its row's id, so it is
-- copied once.
alter table resource_events add column legacy_id text;
create unique index resource_events_one_per_legacy_log on resource_events (legacy_id)
    where legacy_id is not null;

-- An imported VPN account whose terms (expiry, limit, usage) the next traffic sync takes
-- from the VPN manager as they are there: the Go service's own copy is often stale.
alter table resources add column adopt_upstream_terms boolean not null default false;
