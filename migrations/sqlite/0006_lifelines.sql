-- Each engine's lifeline: a process beats its row every second while it runs. A lease
-- held by an owner whose beat is older than a few seconds is free at once, so the work a
-- killed process held resumes in seconds instead of waiting out the lease.
create table lifelines (
    owner text primary key,
    beat_at text not null,
    -- When the owner counts as dead unless it beats again (a few seconds after a beat).
    dead_at text not null
);
create index lifelines_dead on lifelines (dead_at);

-- Fencing: every claim of a resource takes a new epoch, and a step's write names the
-- epoch it was claimed under, so a step that outlived its lease (a stalled process whose
-- work was taken over, even if it claimed the row again since) changes nothing.
alter table resources add column lease_epoch integer not null default 0;
