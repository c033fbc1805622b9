-- A scrape counts live resources by kind and status, and active nodes (freshness, load):
-- from this index, whatever the size of the history (deleted rows are not in it). It holds
-- no column a node report writes, so those updates stay heap-only (HOT).
create index resources_live_by_kind_status on resources (resource_type, status)
    where status <> 'deleted';
