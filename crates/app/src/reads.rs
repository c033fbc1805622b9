//! The read ladder both user documents climb (`GET /my/node`, `GET /my/vpn`): the read
//! model's answer while no commit changed it and its subscription part holds; else the kept
//! answer renewed with a new subscription answer, without the database; else a full read,
//! remembered for when the database is down. Each fresh answer is kept for the next read.

use std::sync::Arc;
use std::time::Instant;

use super::last_known::LastKnown;
use super::read_model::ReadModel;
use super::{App, AppError};

/// A user's document served through the ladder.
pub(super) trait Document: Clone {
    /// Until when the answer holds with no change committed (its subscription answer
    /// expires then); `None`: it may not be kept (the subscription service did not answer).
    fn fresh_until(&self) -> Option<Instant>;
}

/// Where one kind of document is kept: until a commit changes it (`model`), and the last
/// answer, served while the database is down (`last`).
pub(super) struct Shelves<'a, D> {
    pub model: &'a ReadModel<D>,
    pub last: &'a LastKnown<D>,
}

impl App {
    /// `user_id`'s document: `now` brings a kept answer up to the clock, `renew` renews a
    /// kept one whose subscription part expired (`None`: only a full read will do), and
    /// `read` is the full read.
    pub(super) async fn read_through<D: Document>(
        &self,
        shelves: Shelves<'_, D>,
        user_id: &str,
        now: impl Fn(Arc<D>) -> Arc<D>,
        renew: impl AsyncFnOnce(&D) -> Result<Option<D>, AppError>,
        read: impl Future<Output = Result<D, AppError>>,
    ) -> Result<Arc<D>, AppError> {
        let Shelves { model, last } = shelves;
        let ticket = match model.get(user_id, Instant::now()) {
            Ok(kept) => return Ok(now(kept)),
            Err(ticket) => ticket,
        };
        if let Some(kept) = model.kept(user_id)
            && let Some(renewed) = renew(&kept).await?
        {
            let renewed = Arc::new(renewed);
            self.keep(model, user_id, ticket, &renewed);
            return Ok(renewed);
        }
        let answer = last.read(user_id, read).await?;
        if answer.remembered {
            return Ok(now(answer.value));
        }
        self.keep(model, user_id, ticket, &answer.value);
        Ok(answer.value)
    }

    /// Keeps a document a read took `ticket` for, until it is no longer fresh: only when
    /// it says until when (the subscription service answered) and while every replica's
    /// changes are heard here.
    fn keep<D: Document>(
        &self,
        model: &ReadModel<D>,
        user: &str,
        ticket: super::read_model::Ticket,
        doc: &Arc<D>,
    ) {
        if let Some(until) = doc.fresh_until()
            && self.ports.store.bus().hearing()
        {
            model.put(user, ticket, doc.clone(), until);
        }
    }
}
