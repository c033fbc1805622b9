//! The SQL both backends share. PostgreSQL and SQLite agree on almost everything this
//! service needs (`returning`, `on conflict`, partial indexes, `$n` parameters), so the
//! `Store` implementation is written once, here, and stamped out for each backend by
//! `impl_store!`. A backend supplies three things: its pool type, the suffix that makes a
//! claim skip rows other workers hold (`for update skip locked` on PostgreSQL; nothing on
//! SQLite, whose single writer already serialises claims), how it wakes waiting
//! workers (`wake_in_tx`, `wake_after_commit`), and how it runs the hottest read
//! (`current_node_row`).

macro_rules! impl_store {
    ($store:ty, $db:ty, backend = $backend:literal, skip_locked = $skip_locked:literal, for_update = $for_update:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("select 1").execute(&self.pool).await?;
                Ok(())
            }

            fn wakeups(&self) -> std::sync::Arc<$crate::store::Wakeups> {
                self.wakeups.clone()
            }

            async fn regions(&self) -> StoreResult<Vec<Region>> {
                Ok(sqlx::query_as(
                    "select code, name, provider, available from regions order by sort_order, code",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn insert_resource(
                &self,
                new: &NewResource,
                now: DateTime<Utc>,
            ) -> StoreResult<Inserted> {
                // A conflicting insert waits for the other transaction and then skips, so
                // a lost race still finds the winner below. The loop covers the winner
                // being deleted between our insert and our read.
                for _ in 0..3 {
                    let mut tx = self.pool.begin().await?;
                    let row: Option<ResourceRow> = sqlx::query_as(concat!(
                        "insert into resources (id, resource_type, subscription_id, user_id, \
                         user_email, order_key, provider, region, plan_tier, status, \
                         desired_state, generation, phase, traffic_limit, traffic_used, \
                         attempts, upstream_released, next_attempt_at, created_at, updated_at) \
                         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 'active', 0, 1, \
                         $10, 0, 0, false, $11, $11, $11) \
                         on conflict do nothing returning ",
                        resource_columns!()
                    ))
                    .bind(new.id.to_string())
                    .bind(new.kind.as_str())
                    .bind(&new.subscription_id)
                    .bind(&new.user_id)
                    .bind(&new.user_email)
                    .bind(&new.order_key)
                    .bind(&new.provider)
                    .bind(&new.region)
                    .bind(&new.plan_tier)
                    .bind(new.traffic_limit)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(row) = row {
                        let event = NewEvent::new(EventKind::ProvisionRequested, &new.actor);
                        insert_event(&mut tx, new.id, &event, now).await?;
                        Self::wake_in_tx(&mut tx, Topic::Resources).await?;
                        tx.commit().await?;
                        self.wake_after_commit(Topic::Resources);
                        return Ok(Inserted::Created(row.try_into()?));
                    }
                    tx.rollback().await?;

                    let by_subscription: Option<ResourceRow> =
                        sqlx::query_as(concat!(live_sql!(), "subscription_id = $1"))
                            .bind(&new.subscription_id)
                            .bind(new.kind.as_str())
                            .fetch_optional(&self.pool)
                            .await?;
                    if let Some(row) = by_subscription {
                        return Ok(Inserted::ExistingForSubscription(row.try_into()?));
                    }
                    let by_user: Option<ResourceRow> =
                        sqlx::query_as(concat!(live_sql!(), "user_id = $1"))
                            .bind(&new.user_id)
                            .bind(new.kind.as_str())
                            .fetch_optional(&self.pool)
                            .await?;
                    if let Some(row) = by_user {
                        return Ok(Inserted::ExistingForUser(row.try_into()?));
                    }
                }
                Err(StoreError::Conflict(
                    "the subscription's resource changed repeatedly while recording the order".into(),
                ))
            }

            async fn request_deletion(
                &self,
                id: Uuid,
                reason: DeleteReason,
                actor: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<Resource>> {
                let mut tx = self.pool.begin().await?;
                let row: Option<ResourceRow> = sqlx::query_as(concat!(
                    "update resources set desired_state = 'deleted', generation = generation + 1, \
                     delete_reason = $2, next_attempt_at = $3, updated_at = $3 \
                     where id = $1 and desired_state = 'active' and status <> 'deleted' \
                     returning ",
                    resource_columns!()
                ))
                .bind(id.to_string())
                .bind(reason.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                match row {
                    Some(row) => {
                        let event = NewEvent::new(EventKind::DeleteRequested, actor)
                            .with_message(reason.as_str());
                        insert_event(&mut tx, id, &event, now).await?;
                        Self::wake_in_tx(&mut tx, Topic::Resources).await?;
                        tx.commit().await?;
                        self.wake_after_commit(Topic::Resources);
                        Ok(Some(row.try_into()?))
                    }
                    None => {
                        tx.rollback().await?;
                        self.resource(id).await
                    }
                }
            }

            async fn resource(&self, id: Uuid) -> StoreResult<Option<Resource>> {
                // Primary key: at most one row (`fetch_all`, see `current_hosting_node`).
                let rows: Vec<ResourceRow> = sqlx::query_as(concat!(
                    "select ",
                    resource_columns!(),
                    " from resources where id = $1"
                ))
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().next().map(Resource::try_from).transpose()
            }

            async fn resources_for_subscription(
                &self,
                subscription_id: &str,
            ) -> StoreResult<Vec<Resource>> {
                let rows: Vec<ResourceRow> = sqlx::query_as(concat!(
                    "select ",
                    resource_columns!(),
                    " from resources where subscription_id = $1 or id in \
                     (select resource_id from entitlements where subscription_id = $1) \
                     order by created_at, id"
                ))
                .bind(subscription_id)
                .fetch_all(&self.pool)
                .await?;
                row::resources(rows)
            }

            async fn current_hosting_node(&self, user_id: &str) -> StoreResult<Option<Resource>> {
                // The query behind every `GET /my/node`: the backend runs it its own way.
                self.current_node_row(user_id).await?.map(Resource::try_from).transpose()
            }

            async fn node_owner(&self, node_id: &str) -> StoreResult<Option<Uuid>> {
                let id: Option<String> =
                    sqlx::query_scalar("select id from resources where node_id = $1 limit 1")
                        .bind(node_id)
                        .fetch_optional(&self.pool)
                        .await?;
                id.map(|id| Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string())))
                    .transpose()
            }

            async fn events(&self, id: Uuid) -> StoreResult<Vec<Event>> {
                let rows: Vec<EventRow> = sqlx::query_as(
                    "select kind, actor, message, at from resource_events \
                     where resource_id = $1 order by id",
                )
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(Event::try_from).collect()
            }

            async fn append_event(
                &self,
                id: Uuid,
                event: &NewEvent,
                now: DateTime<Utc>,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                insert_event(&mut tx, id, event, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn node_credential(&self, id: Uuid) -> StoreResult<Option<String>> {
                let digest: Option<Option<String>> =
                    sqlx::query_scalar("select callback_token_hash from resources where id = $1")
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(digest.flatten())
            }

            async fn claim_resources(&self, claim: Claim<'_>) -> StoreResult<Vec<Resource>> {
                let rows: Vec<ResourceRow> = sqlx::query_as(concat!(
                    "update resources set lease_owner = $1, lease_until = $2 where id in (\
                     select id from resources where next_attempt_at <= $3 \
                     and (lease_until is null or lease_until < $3) \
                     order by next_attempt_at limit $4",
                    $skip_locked,
                    ") returning ",
                    resource_columns!()
                ))
                .bind(claim.owner)
                .bind(claim.lease_until())
                .bind(claim.now)
                .bind(claim.limit)
                .fetch_all(&self.pool)
                .await?;
                row::resources(rows)
            }

            async fn apply(&self, c: &Change) -> StoreResult<bool> {
                if let Some(to) = c.status {
                    // Every status write is a transition the state machine allows.
                    $crate::domain::state::transition(c.expect, to)
                        .map_err(|e| StoreError::Other(e.to_string()))?;
                }
                let owner = match &c.guard {
                    Guard::Lease(owner) => Some(owner.as_str()),
                    Guard::Unleased => None,
                };
                let conn = c.connection.clone().unwrap_or_default();
                let attempts: i32 = match c.attempts {
                    Attempts::Keep => 0,
                    Attempts::Reset => 1,
                    Attempts::Increment => 2,
                };
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "update resources set \
                     status = coalesce($3, status), \
                     node_id = coalesce($4, node_id), \
                     phase = case when $5 > phase then $5 else phase end, \
                     public_ip = coalesce($6, public_ip), \
                     api_port = coalesce($7, api_port), \
                     api_key = coalesce($8, api_key), \
                     vless_port = coalesce($9, vless_port), \
                     ss_port = coalesce($10, ss_port), \
                     public_key = coalesce($11, public_key), \
                     short_id = coalesce($12, short_id), \
                     error_message = coalesce($13, error_message), \
                     last_error = coalesce($14, last_error), \
                     callback_token_hash = coalesce($15, callback_token_hash), \
                     upstream_released = coalesce($16, upstream_released), \
                     traffic_limit = coalesce($17, traffic_limit), \
                     ready_at = coalesce($18, ready_at), \
                     deadline_at = case when $19 then $20 else deadline_at end, \
                     attempts = case $21 when 1 then 0 when 2 then attempts + 1 else attempts end, \
                     next_attempt_at = case when $22 then \
                         (case when generation <> $24 or spec_version <> $31 then $25 else $23 end) \
                         else next_attempt_at end, \
                     lease_owner = case when $26 then null else lease_owner end, \
                     lease_until = case when $26 then null else lease_until end, \
                     vpn_user_id = coalesce($29, vpn_user_id), \
                     applied_version = case when $30 > applied_version then $30 \
                         else applied_version end, \
                     updated_at = $25 \
                     where id = $1 and status = $2 \
                     and ($27 is null or lease_owner = $27) \
                     and ($28 is null or desired_state = $28)",
                )
                .bind(c.id.to_string())
                .bind(c.expect.as_str())
                .bind(c.status.map(|s| s.as_str()))
                .bind(&c.node_id)
                .bind(c.phase)
                .bind(conn.public_ip)
                .bind(conn.api_port)
                .bind(conn.api_key)
                .bind(conn.vless_port)
                .bind(conn.ss_port)
                .bind(conn.public_key)
                .bind(conn.short_id)
                .bind(&c.error_message)
                .bind(&c.last_error)
                .bind(&c.callback_token_hash)
                .bind(c.upstream_released)
                .bind(c.traffic_limit)
                .bind(c.ready_at)
                .bind(c.deadline_at.is_some())
                .bind(c.deadline_at.flatten())
                .bind(attempts)
                .bind(c.next_attempt_at.is_some())
                .bind(c.next_attempt_at.flatten())
                .bind(c.seen_generation)
                .bind(c.now)
                .bind(c.release_lease)
                .bind(owner)
                .bind(c.expect_desired.map(|d| d.as_str()))
                .bind(&c.vpn_user_id)
                .bind(c.applied_version)
                .bind(c.seen_spec_version)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                for event in &c.events {
                    insert_event(&mut tx, c.id, event, c.now).await?;
                }
                let due_now = matches!(c.next_attempt_at, Some(Some(at)) if at <= c.now);
                if due_now {
                    Self::wake_in_tx(&mut tx, Topic::Resources).await?;
                }
                if let Some(version) = c.report_through {
                    sqlx::query(
                        "update entitlements set reported = true \
                         where resource_id = $1 and spec_version <= $2 and not reported",
                    )
                    .bind(c.id.to_string())
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                }
                for cb in &c.callbacks {
                    enqueue_callback(&mut tx, c.id, cb, c.now).await?;
                }
                if !c.callbacks.is_empty() {
                    Self::wake_in_tx(&mut tx, Topic::Outbox).await?;
                }
                tx.commit().await?;
                if due_now {
                    self.wake_after_commit(Topic::Resources);
                }
                if !c.callbacks.is_empty() {
                    self.wake_after_commit(Topic::Outbox);
                }
                Ok(true)
            }

            async fn extend_lease(
                &self,
                id: Uuid,
                owner: &str,
                until: DateTime<Utc>,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "update resources set lease_until = $3 where id = $1 and lease_owner = $2",
                )
                .bind(id.to_string())
                .bind(owner)
                .bind(until)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> StoreResult<()> {
                sqlx::query(
                    "update resources set lease_owner = null, lease_until = null, \
                     next_attempt_at = $3 where id = $1 and lease_owner = $2",
                )
                .bind(id.to_string())
                .bind(owner)
                .bind(now)
                .execute(&self.pool)
                .await?;
                self.wake_after_commit(Topic::Resources);
                Ok(())
            }

            async fn next_resource_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
                Ok(sqlx::query_scalar(
                    "select min(case when lease_until is not null and lease_until > next_attempt_at \
                     then lease_until else next_attempt_at end) \
                     from resources where next_attempt_at is not null",
                )
                .fetch_one(&self.pool)
                .await?)
            }

            async fn claim_outbox(&self, claim: Claim<'_>) -> StoreResult<Vec<OutboxMessage>> {
                let rows: Vec<OutboxRow> = sqlx::query_as(concat!(
                    "update outbox set lease_owner = $1, lease_until = $2 where id in (\
                     select o.id from outbox o where o.delivered_at is null \
                     and o.next_attempt_at <= $3 \
                     and (o.lease_until is null or o.lease_until < $3) \
                     and not exists (select 1 from outbox p where p.subscription_id = o.subscription_id \
                     and p.delivered_at is null and p.id < o.id) \
                     order by o.id limit $4",
                    $skip_locked,
                    ") returning id, subscription_id, payload, attempts, created_at"
                ))
                .bind(claim.owner)
                .bind(claim.lease_until())
                .bind(claim.now)
                .bind(claim.limit)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(OutboxMessage::try_from).collect()
            }

            async fn outbox_delivered(
                &self,
                id: i64,
                owner: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<()> {
                sqlx::query(
                    "update outbox set delivered_at = $3, lease_owner = null, lease_until = null \
                     where id = $1 and lease_owner = $2",
                )
                .bind(id)
                .bind(owner)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn outbox_retry(
                &self,
                id: i64,
                owner: &str,
                next_attempt_at: DateTime<Utc>,
                error: &str,
            ) -> StoreResult<()> {
                sqlx::query(
                    "update outbox set attempts = attempts + 1, next_attempt_at = $3, \
                     last_error = $4, lease_owner = null, lease_until = null \
                     where id = $1 and lease_owner = $2",
                )
                .bind(id)
                .bind(owner)
                .bind(next_attempt_at)
                .bind(error)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn next_outbox_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
                Ok(sqlx::query_scalar(
                    "select min(case when lease_until is not null and lease_until > next_attempt_at \
                     then lease_until else next_attempt_at end) \
                     from outbox where delivered_at is null",
                )
                .fetch_one(&self.pool)
                .await?)
            }

            async fn outbox_backlog(&self) -> StoreResult<i64> {
                Ok(sqlx::query_scalar("select count(*) from outbox where delivered_at is null")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn save_subscription(
                &self,
                user_id: &str,
                app: &str,
                active: Option<&SubscriptionSnapshot>,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<SubscriptionSnapshot>> {
                let body = active
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StoreError::Other(e.to_string()))?;
                let stored: Option<String> = sqlx::query_scalar(
                    "insert into subscription_snapshots (user_id, app, active, body, fetched_at) \
                     values ($1, $2, $3, $4, $5) on conflict (user_id, app) do update set \
                     active = excluded.active, \
                     body = coalesce(excluded.body, subscription_snapshots.body), \
                     fetched_at = excluded.fetched_at returning body",
                )
                .bind(user_id)
                .bind(app)
                .bind(active.is_some())
                .bind(body)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                stored
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            }

            async fn subscription(
                &self,
                user_id: &str,
                app: &str,
            ) -> StoreResult<Option<StoredSnapshot>> {
                let row: Option<SnapshotRow> = sqlx::query_as(
                    "select active, body, fetched_at from subscription_snapshots \
                     where user_id = $1 and app = $2",
                )
                .bind(user_id)
                .bind(app)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    let last_active = r
                        .body
                        .as_deref()
                        .map(serde_json::from_str)
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    Ok(StoredSnapshot {
                        active: r.active,
                        last_active,
                        fetched_at: r.fetched_at,
                    })
                })
                .transpose()
            }

            async fn record_vpn_order(
                &self,
                order: &VpnOrder,
                now: DateTime<Utc>,
            ) -> StoreResult<VpnOrderOutcome> {
                // A concurrent order for the same user (or the same order twice) trips a
                // unique index; the loser looks again and finds what the winner recorded.
                let mut last = None;
                for _ in 0..5 {
                    match self.try_record_vpn_order(order, now).await {
                        Err(StoreError::Conflict(e)) => last = Some(e),
                        other => return other,
                    }
                }
                Err(StoreError::Conflict(last.unwrap_or_default()))
            }

            async fn vpn_of_user(&self, user_id: &str) -> StoreResult<VpnRecord> {
                let entitlement: Option<EntitlementRow> = sqlx::query_as(concat!(
                    "select ",
                    entitlement_columns!(),
                    " from entitlements where user_id = $1 \
                     order by is_current desc, created_at desc, id desc limit 1"
                ))
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                let resource: Option<ResourceRow> = sqlx::query_as(concat!(
                    "select ",
                    resource_columns!(),
                    " from resources where user_id = $1 and resource_type = 'vpn_user' \
                     order by created_at desc, id desc limit 1"
                ))
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(VpnRecord {
                    entitlement: entitlement.map(Entitlement::try_from).transpose()?,
                    resource: resource.map(Resource::try_from).transpose()?,
                })
            }

            async fn entitlements(
                &self,
                f: &EntitlementFilter,
                now: DateTime<Utc>,
            ) -> StoreResult<Vec<Entitlement>> {
                // `expired` is not stored: it is an `active` row past its expiry.
                let (status, expired) = match f.status.as_deref() {
                    Some("expired") => (Some("active"), Some(true)),
                    Some("active") => (Some("active"), Some(false)),
                    other => (other, None),
                };
                let rows: Vec<EntitlementRow> = sqlx::query_as(concat!(
                    "select ",
                    entitlement_columns!(),
                    " from entitlements where ($1 is null or user_id = $1) \
                     and ($2 is null or business_type = $2) and ($3 is null or status = $3) \
                     and ($4 is null or (expire_at <= $5) = $4) \
                     order by created_at desc, id desc limit $6"
                ))
                .bind(&f.user_id)
                .bind(&f.business_type)
                .bind(status)
                .bind(expired)
                .bind(now)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?;
                row::entitlements(rows)
            }

            async fn entitlements_for_subscription(
                &self,
                subscription_id: &str,
            ) -> StoreResult<Vec<Entitlement>> {
                let rows: Vec<EntitlementRow> = sqlx::query_as(concat!(
                    "select ",
                    entitlement_columns!(),
                    " from entitlements where subscription_id = $1 order by created_at, id"
                ))
                .bind(subscription_id)
                .fetch_all(&self.pool)
                .await?;
                row::entitlements(rows)
            }

            async fn unreported_entitlements(
                &self,
                resource_id: Uuid,
                version: i64,
            ) -> StoreResult<Vec<Entitlement>> {
                let rows: Vec<EntitlementRow> = sqlx::query_as(concat!(
                    "select ",
                    entitlement_columns!(),
                    " from entitlements where resource_id = $1 and spec_version <= $2 \
                     and not reported order by spec_version, created_at"
                ))
                .bind(resource_id.to_string())
                .bind(version)
                .fetch_all(&self.pool)
                .await?;
                row::entitlements(rows)
            }

            async fn cancel_vpn_subscription(
                &self,
                subscription_id: &str,
                reason: DeleteReason,
                actor: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<Resource>> {
                let mut tx = self.pool.begin().await?;
                // Resource rows first, then entitlements (the order every writer locks in).
                sqlx::query(concat!(
                    "select id from resources where id in (select resource_id from entitlements \
                     where subscription_id = $1 and status <> 'cancelled') order by id",
                    $for_update
                ))
                .bind(subscription_id)
                .fetch_all(&mut *tx)
                .await?;
                let ended: Vec<EntitlementRow> = sqlx::query_as(concat!(
                    "select ",
                    entitlement_columns!(),
                    " from entitlements where subscription_id = $1 and status <> 'cancelled'",
                    $for_update
                ))
                .bind(subscription_id)
                .fetch_all(&mut *tx)
                .await?;
                let ended = row::entitlements(ended)?;
                sqlx::query(
                    "update entitlements set status = 'cancelled', is_current = false, \
                     updated_at = $2 where subscription_id = $1 and status <> 'cancelled'",
                )
                .bind(subscription_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let current = ended.iter().find(|e| e.is_current);
                let Some(any) = current.or(ended.first()) else {
                    tx.rollback().await?;
                    // Already cancelled (a retried webhook): answer with the resource.
                    let all = self.entitlements_for_subscription(subscription_id).await?;
                    return match all.last() {
                        Some(e) => self.resource(e.resource_id).await,
                        None => Ok(None),
                    };
                };
                let resource_id = any.resource_id;
                if current.is_some() {
                    // The user's VPN rests on this subscription: the account goes.
                    let deleting: Option<ResourceRow> = sqlx::query_as(concat!(
                        "update resources set desired_state = 'deleted', \
                         generation = generation + 1, delete_reason = $2, subscription_id = $4, \
                         next_attempt_at = $3, updated_at = $3 \
                         where id = $1 and desired_state = 'active' and status <> 'deleted' \
                         returning ",
                        resource_columns!()
                    ))
                    .bind(resource_id.to_string())
                    .bind(reason.as_str())
                    .bind(now)
                    .bind(subscription_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if deleting.is_some() {
                        let event = NewEvent::new(EventKind::DeleteRequested, actor)
                            .with_message(reason.as_str());
                        insert_event(&mut tx, resource_id, &event, now).await?;
                        Self::wake_in_tx(&mut tx, Topic::Resources).await?;
                        tx.commit().await?;
                        self.wake_after_commit(Topic::Resources);
                        return self.resource(resource_id).await;
                    }
                }
                // Superseded history (or an account already going): the VPN manager keeps
                // serving the user's current entitlement, and the subscription is told now.
                let cb = $crate::ports::FulfillmentCallback {
                    subscription_id: subscription_id.to_owned(),
                    app: $crate::engine::VPN_APP.into(),
                    status: $crate::domain::CallbackStatus::Deleted.as_str().into(),
                    reason: Some(reason.as_str().into()),
                    error: None,
                    message: Some("vpn entitlement ended".into()),
                };
                enqueue_callback(&mut tx, resource_id, &cb, now).await?;
                Self::wake_in_tx(&mut tx, Topic::Outbox).await?;
                tx.commit().await?;
                self.wake_after_commit(Topic::Outbox);
                self.resource(resource_id).await
            }

            async fn adjust_vpn(
                &self,
                resource_id: Uuid,
                a: &VpnAdjustment,
                due_at: DateTime<Utc>,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<(Entitlement, Resource)>> {
                let mut tx = self.pool.begin().await?;
                // Resource first, then entitlements (the order every writer locks in).
                sqlx::query(concat!("select id from resources where id = $1", $for_update))
                    .bind(resource_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                let current: Option<EntitlementRow> = sqlx::query_as(concat!(
                    "select ",
                    entitlement_columns!(),
                    " from entitlements where resource_id = $1 and is_current",
                    $for_update
                ))
                .bind(resource_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(current) = current.map(Entitlement::try_from).transpose()? else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let traffic_limit = a.traffic_limit.unwrap_or(current.traffic_limit);
                let expire_at = match a.extend_days {
                    Some(d) => crate::domain::units::add_days(current.expire_at.max(now), d),
                    None => current.expire_at,
                };
                let plan_tier = a.plan_tier.clone().unwrap_or(current.plan_tier.clone());
                let service_tier = a.service_tier.clone().unwrap_or(current.service_tier.clone());
                let resource: Option<ResourceRow> = sqlx::query_as(concat!(
                    "update resources set traffic_limit = $2, expire_at = $3, plan_tier = $4, \
                     service_tier = $5, spec_version = spec_version + 1, \
                     next_attempt_at = case when next_attempt_at is null or next_attempt_at > $6 \
                         then $6 else next_attempt_at end, updated_at = $7 \
                     where id = $1 and resource_type = 'vpn_user' and desired_state = 'active' \
                     and status in ('pending', 'creating', 'active') returning ",
                    resource_columns!()
                ))
                .bind(resource_id.to_string())
                .bind(traffic_limit)
                .bind(expire_at)
                .bind(&plan_tier)
                .bind(&service_tier)
                .bind(due_at)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(resource) = resource.map(Resource::try_from).transpose()? else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let updated: EntitlementRow = sqlx::query_as(concat!(
                    "update entitlements set traffic_limit = $2, expire_at = $3, plan_tier = $4, \
                     service_tier = $5, updated_at = $6 where id = $1 returning ",
                    entitlement_columns!()
                ))
                .bind(current.id.to_string())
                .bind(traffic_limit)
                .bind(expire_at)
                .bind(&plan_tier)
                .bind(&service_tier)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let event = NewEvent::new(EventKind::OrderRecorded, "admin")
                    .with_message("terms adjusted");
                insert_event(&mut tx, resource_id, &event, now).await?;
                if due_at <= now {
                    Self::wake_in_tx(&mut tx, Topic::Resources).await?;
                }
                tx.commit().await?;
                if due_at <= now {
                    self.wake_after_commit(Topic::Resources);
                }
                Ok(Some((updated.try_into()?, resource)))
            }

            async fn set_user_email(
                &self,
                user_id: &str,
                email: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<Resource>> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "update resources set user_email = $2, updated_at = $3 \
                     where user_id = $1 and resource_type = 'hosting_node' and status <> 'deleted'",
                )
                .bind(user_id)
                .bind(email)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let vpn: Option<ResourceRow> = sqlx::query_as(concat!(
                    "update resources set user_email = $2, spec_version = spec_version + 1, \
                     next_attempt_at = $3, updated_at = $3 \
                     where user_id = $1 and resource_type = 'vpn_user' \
                     and desired_state = 'active' and status in ('pending', 'creating', 'active') \
                     returning ",
                    resource_columns!()
                ))
                .bind(user_id)
                .bind(email)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                sqlx::query(
                    "update entitlements set email = $2, updated_at = $3 \
                     where user_id = $1 and is_current",
                )
                .bind(user_id)
                .bind(email)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if vpn.is_some() {
                    Self::wake_in_tx(&mut tx, Topic::Resources).await?;
                }
                tx.commit().await?;
                if vpn.is_some() {
                    self.wake_after_commit(Topic::Resources);
                }
                vpn.map(Resource::try_from).transpose()
            }

            async fn vpn_user_deleting(&self, user_id: &str, except: Uuid) -> StoreResult<bool> {
                let n: i64 = sqlx::query_scalar(
                    "select count(*) from resources where user_id = $1 \
                     and resource_type = 'vpn_user' and desired_state = 'deleted' \
                     and status <> 'deleted' and id <> $2",
                )
                .bind(user_id)
                .bind(except.to_string())
                .fetch_one(&self.pool)
                .await?;
                Ok(n > 0)
            }

            async fn claim_resource(
                &self,
                id: Uuid,
                claim: Claim<'_>,
            ) -> StoreResult<Option<Resource>> {
                let rows: Vec<ResourceRow> = sqlx::query_as(concat!(
                    "update resources set lease_owner = $2, lease_until = $3 \
                     where id = $1 and next_attempt_at is not null \
                     and (lease_until is null or lease_until < $4) returning ",
                    resource_columns!()
                ))
                .bind(id.to_string())
                .bind(claim.owner)
                .bind(claim.lease_until())
                .bind(claim.now)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().next().map(Resource::try_from).transpose()
            }

            async fn vpn_sync_page(
                &self,
                after: Option<Uuid>,
                limit: i64,
                now: DateTime<Utc>,
            ) -> StoreResult<Vec<(Uuid, String)>> {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "select id, vpn_user_id from resources \
                     where resource_type = 'vpn_user' and status = 'active' \
                     and desired_state = 'active' and vpn_user_id is not null \
                     and expire_at > $2 and id > $1 order by id limit $3",
                )
                .bind(after.map(|id| id.to_string()).unwrap_or_default())
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, uuid)| {
                        Ok((Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?, uuid))
                    })
                    .collect()
            }

            async fn record_vpn_usage(
                &self,
                usage: &[(Uuid, i64)],
                now: DateTime<Utc>,
            ) -> StoreResult<()> {
                if usage.is_empty() {
                    return Ok(());
                }
                // One statement for the batch: `with v(id, used) as (values …) update …`.
                let mut q = sqlx::QueryBuilder::<$db>::new("with v(id, used) as (");
                q.push_values(usage, |mut b, (id, used)| {
                    b.push_bind(id.to_string()).push_bind(*used);
                });
                q.push(
                    ") update resources set traffic_used = v.used, traffic_synced_at = ",
                );
                q.push_bind(now);
                q.push(" from v where resources.id = v.id");
                q.build().execute(&self.pool).await?;
                Ok(())
            }

            async fn record_node_stats(&self, id: Uuid, st: &NodeStats) -> StoreResult<bool> {
                // Read the counters, count in the domain (saturating), write back only if
                // nothing changed meanwhile (compare-and-set on the values read). A sample
                // older than the last recorded one (a late delivery) changes nothing; a
                // repeat adds nothing.
                for _ in 0..8 {
                    type Metering = (i64, Option<i64>, Option<i64>, Option<DateTime<Utc>>);
                    let row: Option<Metering> = sqlx::query_as(
                        "select cast(traffic_used as bigint), cast(counter_rx as bigint), \
                         cast(counter_tx as bigint), stats_at from resources \
                         where id = $1 and resource_type = 'hosting_node' and status <> 'deleted'",
                    )
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some((used, last_rx, last_tx, stats_at)) = row else {
                        return Ok(false);
                    };
                    if stats_at.is_some_and(|at| at > st.at) {
                        return Ok(false);
                    }
                    let total = crate::domain::units::node_traffic(
                        used,
                        last_rx.zip(last_tx),
                        st.rx_bytes,
                        st.tx_bytes,
                    );
                    let done = sqlx::query(
                        "update resources set traffic_used = $2, counter_rx = $3, \
                         counter_tx = $4, load1 = $5, cpu_percent = $6, mem_percent = $7, \
                         stats_at = $8 \
                         where id = $1 and status <> 'deleted' \
                         and cast(traffic_used as bigint) = $9 \
                         and coalesce(cast(counter_rx as bigint), -1) = $10 \
                         and coalesce(cast(counter_tx as bigint), -1) = $11 \
                         and (stats_at is null or stats_at <= $8)",
                    )
                    .bind(id.to_string())
                    .bind(total)
                    .bind(st.rx_bytes)
                    .bind(st.tx_bytes)
                    .bind(st.load1)
                    .bind(st.cpu_percent)
                    .bind(st.mem_percent)
                    .bind(st.at)
                    .bind(used)
                    .bind(last_rx.unwrap_or(-1))
                    .bind(last_tx.unwrap_or(-1))
                    .execute(&self.pool)
                    .await?;
                    if done.rows_affected() == 1 {
                        return Ok(true);
                    }
                }
                Err(StoreError::Conflict(
                    "the node's counters changed repeatedly while recording a report".into(),
                ))
            }

            async fn purge_idempotency_keys(
                &self,
                before: DateTime<Utc>,
                limit: i64,
            ) -> StoreResult<u64> {
                let done = sqlx::query(
                    "delete from idempotency_keys where (scope, key) in (\
                     select scope, key from idempotency_keys \
                     where status_code is not null and created_at < $1 limit $2)",
                )
                .bind(before)
                .bind(limit)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn purge_delivered_outbox(
                &self,
                before: DateTime<Utc>,
                limit: i64,
            ) -> StoreResult<u64> {
                let done = sqlx::query(
                    "delete from outbox where id in (\
                     select id from outbox where delivered_at is not null \
                     and delivered_at < $1 limit $2)",
                )
                .bind(before)
                .bind(limit)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn claim_job(
                &self,
                name: &str,
                first_run_at: DateTime<Utc>,
                claim: Claim<'_>,
            ) -> StoreResult<bool> {
                sqlx::query(
                    "insert into jobs (name, next_run_at) values ($1, $2) on conflict do nothing",
                )
                .bind(name)
                .bind(first_run_at)
                .execute(&self.pool)
                .await?;
                let done = sqlx::query(
                    "update jobs set lease_owner = $2, lease_until = $3 where name = $1 \
                     and next_run_at <= $4 and (lease_until is null or lease_until < $4)",
                )
                .bind(name)
                .bind(claim.owner)
                .bind(claim.lease_until())
                .bind(claim.now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_job(
                &self,
                name: &str,
                owner: &str,
                next_run_at: DateTime<Utc>,
                result: &str,
            ) -> StoreResult<()> {
                sqlx::query(
                    "update jobs set next_run_at = $3, last_result = $4, lease_owner = null, \
                     lease_until = null where name = $1 and lease_owner = $2",
                )
                .bind(name)
                .bind(owner)
                .bind(next_run_at)
                .bind(result)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn failed_work(
                &self,
                now: DateTime<Utc>,
                min_attempts: i32,
                limit: i64,
            ) -> StoreResult<Vec<Resource>> {
                let rows: Vec<ResourceRow> = sqlx::query_as(concat!(
                    "select ",
                    resource_columns!(),
                    " from resources where status <> 'deleted' and (\
                     (status = 'failed' and desired_state = 'active') \
                     or (deadline_at is not null and deadline_at < $1) \
                     or attempts >= $2) order by updated_at, id limit $3"
                ))
                .bind(now)
                .bind(min_attempts)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                row::resources(rows)
            }

            async fn stuck_callbacks(
                &self,
                min_attempts: i32,
                limit: i64,
            ) -> StoreResult<Vec<$crate::store::StuckCallback>> {
                let rows: Vec<(i64, String, String, i32, DateTime<Utc>, Option<String>, DateTime<Utc>)> =
                    sqlx::query_as(
                        "select id, subscription_id, payload, attempts, created_at, last_error, \
                         next_attempt_at from outbox where delivered_at is null and attempts >= $1 \
                         order by id limit $2",
                    )
                    .bind(min_attempts)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(id, subscription_id, payload, attempts, created_at, last_error, next)| {
                        Ok($crate::store::StuckCallback {
                            message: OutboxMessage {
                                id,
                                subscription_id,
                                callback: serde_json::from_str(&payload)
                                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                                attempts,
                                created_at,
                            },
                            last_error,
                            next_attempt_at: next,
                        })
                    })
                    .collect()
            }

            async fn retry_now(
                &self,
                id: Uuid,
                event: &NewEvent,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<Resource>> {
                let mut tx = self.pool.begin().await?;
                let row: Option<ResourceRow> = sqlx::query_as(concat!(
                    "update resources set attempts = 0, next_attempt_at = $2, updated_at = $2 \
                     where id = $1 and status <> 'deleted' returning ",
                    resource_columns!()
                ))
                .bind(id.to_string())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_none() {
                    tx.rollback().await?;
                    return Ok(None);
                }
                insert_event(&mut tx, id, event, now).await?;
                Self::wake_in_tx(&mut tx, Topic::Resources).await?;
                tx.commit().await?;
                self.wake_after_commit(Topic::Resources);
                row.map(Resource::try_from).transpose()
            }

            async fn idempotency_begin(
                &self,
                scope: &str,
                key: &str,
                fingerprint: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<IdempotencyBegin> {
                let inserted = sqlx::query(
                    "insert into idempotency_keys (scope, key, fingerprint, created_at) \
                     values ($1, $2, $3, $4) on conflict do nothing",
                )
                .bind(scope)
                .bind(key)
                .bind(fingerprint)
                .bind(now)
                .execute(&self.pool)
                .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(IdempotencyBegin::Proceed);
                }
                // A first request that never finished (its process died) does not hold
                // the key forever: after a while, the next request with it takes over.
                let stale = now - chrono::Duration::seconds(IDEMPOTENCY_IN_FLIGHT_SECS);
                let taken = sqlx::query(
                    "update idempotency_keys set fingerprint = $3, created_at = $4 \
                     where scope = $1 and key = $2 and status_code is null and created_at < $5",
                )
                .bind(scope)
                .bind(key)
                .bind(fingerprint)
                .bind(now)
                .bind(stale)
                .execute(&self.pool)
                .await?;
                if taken.rows_affected() == 1 {
                    return Ok(IdempotencyBegin::Proceed);
                }
                let row: Option<IdempotencyRow> = sqlx::query_as(
                    "select fingerprint, status_code, body from idempotency_keys \
                     where scope = $1 and key = $2",
                )
                .bind(scope)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    // Abandoned between our insert and our read: the caller may retry.
                    None => IdempotencyBegin::InFlight,
                    Some(r) if r.fingerprint != fingerprint => IdempotencyBegin::Mismatch,
                    Some(IdempotencyRow {
                        status_code: Some(status),
                        body: Some(body),
                        ..
                    }) => IdempotencyBegin::Replay {
                        status: u16::try_from(status).unwrap_or(200),
                        body,
                    },
                    Some(_) => IdempotencyBegin::InFlight,
                })
            }

            async fn idempotency_finish(
                &self,
                scope: &str,
                key: &str,
                status: u16,
                body: &str,
            ) -> StoreResult<()> {
                sqlx::query(
                    "update idempotency_keys set status_code = $3, body = $4 \
                     where scope = $1 and key = $2",
                )
                .bind(scope)
                .bind(key)
                .bind(i32::from(status))
                .bind(body)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn idempotency_abandon(&self, scope: &str, key: &str) -> StoreResult<()> {
                sqlx::query(
                    "delete from idempotency_keys where scope = $1 and key = $2 \
                     and status_code is null",
                )
                .bind(scope)
                .bind(key)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }

        impl $store {
            /// One attempt at `record_vpn_order`; a unique-index conflict (a concurrent
            /// order won) comes back as `StoreError::Conflict` for the caller to retry.
            async fn try_record_vpn_order(
                &self,
                o: &VpnOrder,
                now: DateTime<Utc>,
            ) -> StoreResult<VpnOrderOutcome> {
                let mut tx = self.pool.begin().await?;
                if let Some(key) = &o.order_key {
                    let seen: Option<EntitlementRow> = sqlx::query_as(concat!(
                        "select ",
                        entitlement_columns!(),
                        " from entitlements where order_key = $1"
                    ))
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(seen) = seen {
                        tx.rollback().await?;
                        let entitlement = Entitlement::try_from(seen)?;
                        let resource = $crate::store::Store::resource(self, entitlement.resource_id).await?.ok_or_else(
                            || StoreError::Corrupt("entitlement without its resource".into()),
                        )?;
                        return Ok(VpnOrderOutcome::Duplicate {
                            entitlement,
                            resource,
                        });
                    }
                }
                if o.is_trial {
                    let used: i64 = sqlx::query_scalar(
                        "select count(*) from entitlements where is_trial and (user_id = $1 \
                         or ($2 is not null and device_id = $2) \
                         or ($3 is not null and lower(email) = lower($3)))",
                    )
                    .bind(&o.user_id)
                    .bind(&o.device_id)
                    .bind(&o.email)
                    .fetch_one(&mut *tx)
                    .await?;
                    if used > 0 {
                        tx.rollback().await?;
                        return Ok(VpnOrderOutcome::TrialUsed);
                    }
                }
                // Locks are taken resource first, then entitlements, everywhere.
                let live: Option<ResourceRow> =
                    sqlx::query_as(concat!(live_sql!(), "user_id = $1", $for_update))
                        .bind(&o.user_id)
                        .bind($crate::domain::ResourceKind::VpnUser.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                let live = live.map(Resource::try_from).transpose()?;
                let current: Option<EntitlementRow> = sqlx::query_as(concat!(
                    "select ",
                    entitlement_columns!(),
                    " from entitlements where user_id = $1 and is_current",
                    $for_update
                ))
                .bind(&o.user_id)
                .fetch_optional(&mut *tx)
                .await?;
                let current = current.map(Entitlement::try_from).transpose()?;
                let placement = place_order(&o.terms, current.as_ref(), o.upstream_expiry, now);
                let (expire_at, traffic_limit, merged) = match placement {
                    Placement::Current {
                        expire_at,
                        traffic_limit,
                    } => (expire_at, traffic_limit, false),
                    Placement::MergeIntoCurrent {
                        expire_at,
                        traffic_limit,
                    } => (expire_at, traffic_limit, true),
                };
                // A merged gift keeps the current plan; anything else brings its own.
                let (plan_tier, service_tier) = match (&current, merged) {
                    (Some(c), true) => (c.plan_tier.clone(), c.service_tier.clone()),
                    _ => (o.plan_tier.clone(), o.service_tier.clone()),
                };
                let subscription_id = o
                    .subscription_id
                    .clone()
                    .unwrap_or_else(|| format!("gift:{}", o.entitlement_id));
                let usable = live.filter(|r| r.status != Status::Failed);
                let resource: ResourceRow = match usable {
                    Some(r) => {
                        let event = NewEvent::new(EventKind::OrderRecorded, &o.actor)
                            .with_message(o.order_key.clone().unwrap_or_else(|| "gift".into()));
                        insert_event(&mut tx, r.id, &event, now).await?;
                        sqlx::query_as(concat!(
                            "update resources set traffic_limit = $2, expire_at = $3, \
                             plan_tier = $4, service_tier = $5, subscription_id = $6, \
                             user_email = coalesce($7, user_email), \
                             spec_version = spec_version + 1, \
                             next_attempt_at = case when next_attempt_at is null \
                                 or next_attempt_at > $8 then $8 else next_attempt_at end, \
                             updated_at = $9 where id = $1 returning ",
                            resource_columns!()
                        ))
                        .bind(r.id.to_string())
                        .bind(traffic_limit)
                        .bind(expire_at)
                        .bind(&plan_tier)
                        .bind(&service_tier)
                        .bind(if merged { &r.subscription_id } else { &subscription_id })
                        .bind(&o.email)
                        .bind(o.due_at)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?
                    }
                    None => {
                        // A failed account (refused by the VPN manager) is replaced.
                        sqlx::query(
                            "update resources set desired_state = 'deleted', \
                             generation = generation + 1, delete_reason = 'provision_failed', \
                             next_attempt_at = $2, updated_at = $2 where user_id = $1 \
                             and resource_type = 'vpn_user' and desired_state = 'active' \
                             and status = 'failed'",
                        )
                        .bind(&o.user_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        let row: ResourceRow = sqlx::query_as(concat!(
                            "insert into resources (id, resource_type, subscription_id, user_id, \
                             user_email, order_key, provider, region, plan_tier, status, \
                             desired_state, generation, phase, traffic_limit, traffic_used, \
                             attempts, upstream_released, next_attempt_at, created_at, \
                             updated_at, expire_at, service_tier, spec_version, applied_version) \
                             values ($1, 'vpn_user', $2, $3, $4, $5, 'otun', '', $6, 'pending', \
                             'active', 0, 1, $7, 0, 0, false, $8, $9, $9, $10, $11, 1, 0) \
                             returning ",
                            resource_columns!()
                        ))
                        .bind(o.resource_id.to_string())
                        .bind(&subscription_id)
                        .bind(&o.user_id)
                        .bind(&o.email)
                        .bind(o.order_key.clone().unwrap_or_else(|| subscription_id.clone()))
                        .bind(&plan_tier)
                        .bind(traffic_limit)
                        .bind(o.due_at)
                        .bind(now)
                        .bind(expire_at)
                        .bind(&service_tier)
                        .fetch_one(&mut *tx)
                        .await?;
                        let event = NewEvent::new(EventKind::ProvisionRequested, &o.actor);
                        insert_event(&mut tx, o.resource_id, &event, now).await?;
                        row
                    }
                };
                let resource = Resource::try_from(resource)?;
                let version = resource.vpn.spec_version;
                if merged {
                    sqlx::query(
                        "update entitlements set expire_at = $2, traffic_limit = $3, \
                         updated_at = $4 where user_id = $1 and is_current",
                    )
                    .bind(&o.user_id)
                    .bind(expire_at)
                    .bind(traffic_limit)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query(
                        "update entitlements set is_current = false, \
                         status = case when status = 'active' then 'superseded' else status end, \
                         updated_at = $2 where user_id = $1 and is_current",
                    )
                    .bind(&o.user_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                // A merged grant is kept as a record of what it added.
                let (row_expire, row_limit) = if merged {
                    (expire_at, o.terms.traffic_limit)
                } else {
                    (expire_at, traffic_limit)
                };
                let entitlement: EntitlementRow = sqlx::query_as(concat!(
                    "insert into entitlements (id, user_id, resource_id, subscription_id, \
                     order_key, channel, business_type, plan_tier, service_tier, traffic_limit, \
                     expire_at, email, device_id, note, is_trial, is_current, status, \
                     spec_version, reported, created_at, updated_at) values ($1, $2, $3, $4, \
                     $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
                     $20) returning ",
                    entitlement_columns!()
                ))
                .bind(o.entitlement_id.to_string())
                .bind(&o.user_id)
                .bind(resource.id.to_string())
                .bind(&o.subscription_id)
                .bind(&o.order_key)
                .bind(&o.channel)
                .bind(&o.business_type)
                .bind(&o.plan_tier)
                .bind(&o.service_tier)
                .bind(row_limit)
                .bind(row_expire)
                .bind(&o.email)
                .bind(&o.device_id)
                .bind(&o.note)
                .bind(o.is_trial)
                .bind(!merged)
                .bind(if merged { "merged" } else { "active" })
                .bind(version)
                .bind(o.subscription_id.is_none())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let wake = o.due_at <= now;
                if wake {
                    Self::wake_in_tx(&mut tx, Topic::Resources).await?;
                }
                tx.commit().await?;
                if wake {
                    self.wake_after_commit(Topic::Resources);
                }
                Ok(VpnOrderOutcome::Recorded {
                    entitlement: entitlement.try_into()?,
                    resource,
                })
            }
        }

        async fn enqueue_callback(
            tx: &mut sqlx::Transaction<'_, $db>,
            id: Uuid,
            cb: &$crate::ports::FulfillmentCallback,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            let payload =
                serde_json::to_string(cb).map_err(|e| StoreError::Other(e.to_string()))?;
            sqlx::query(
                "insert into outbox (subscription_id, resource_id, payload, created_at, \
                 attempts, next_attempt_at) values ($1, $2, $3, $4, 0, $4)",
            )
            .bind(&cb.subscription_id)
            .bind(id.to_string())
            .bind(payload)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        async fn insert_event(
            tx: &mut sqlx::Transaction<'_, $db>,
            id: Uuid,
            event: &NewEvent,
            at: DateTime<Utc>,
        ) -> StoreResult<()> {
            sqlx::query(
                "insert into resource_events (resource_id, kind, actor, message, at) \
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(id.to_string())
            .bind(event.kind.as_str())
            .bind(&event.actor)
            .bind(&event.message)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
    };
}

/// The query prefix for "live resources of a kind" (`$2`), to be completed with a filter
/// on `$1`.
macro_rules! live_sql {
    () => {
        concat!(
            "select ",
            resource_columns!(),
            " from resources where resource_type = $2 and desired_state = 'active' \
             and status <> 'deleted' and "
        )
    };
}

pub(crate) use impl_store;
pub(crate) use live_sql;

/// How long an unfinished `Idempotency-Key` request holds its key (longer than any
/// request may take: the API answers every request within 30 s).
pub const IDEMPOTENCY_IN_FLIGHT_SECS: i64 = 60;

/// Which engine loop a wake-up is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Resources,
    Outbox,
}

impl Topic {
    pub const fn channel(self) -> &'static str {
        match self {
            Topic::Resources => "fulfillment_resources",
            Topic::Outbox => "fulfillment_outbox",
        }
    }
}
