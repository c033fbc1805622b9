-- The retention pass deletes finished idempotency keys and delivered callbacks by age.
create index idempotency_keys_finished_created on idempotency_keys (created_at)
    where status_code is not null;
create index outbox_delivered_at on outbox (delivered_at) where delivered_at is not null;
