-- A scrape counts live resources by kind and status, and active nodes by freshness: from
-- this index, whatever the size of the history (deleted rows are not in it).
create index resources_live_by_kind_status on resources (resource_type, status, stats_at)
    where status <> 'deleted';
