-- Event-stream tickets already used (CONTRACTS.md §4.7: a ticket opens one stream, once,
-- on whichever replica). Kept until the ticket would have expired anyway; the retention
-- job deletes them after.
create table spent_tickets (
    nonce text primary key,
    expires_at timestamptz not null
);
create index spent_tickets_by_expiry on spent_tickets (expires_at);
