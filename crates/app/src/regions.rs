//! Regions, read from the database and kept in memory for a minute: every node view names
//! its region, and that should not cost a query.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ports::store::{Region, Store, StoreResult};

const TTL: Duration = Duration::from_secs(60);

pub struct Regions {
    store: Arc<dyn Store>,
    cached: Mutex<Option<(Instant, Arc<Vec<Region>>)>>,
}

impl Regions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Regions {
            store,
            cached: Mutex::new(None),
        }
    }

    pub async fn all(&self) -> StoreResult<Arc<Vec<Region>>> {
        if let Some((at, regions)) = &*self.cached.lock().unwrap()
            && at.elapsed() < TTL
        {
            return Ok(regions.clone());
        }
        let regions = Arc::new(self.store.regions().await?);
        *self.cached.lock().unwrap() = Some((Instant::now(), regions.clone()));
        Ok(regions)
    }

    pub async fn get(&self, code: &str) -> StoreResult<Option<Region>> {
        Ok(self.all().await?.iter().find(|r| r.code == code).cloned())
    }
}

impl super::App {
    /// The region an order or a user names (the default region when none), if it is
    /// known and open for new nodes.
    pub(super) async fn available_region(
        &self,
        code: Option<&str>,
    ) -> Result<Region, super::AppError> {
        use super::AppError;
        let code = code
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.config.default_region);
        match self.regions.get(code).await? {
            Some(r) if r.available => Ok(r),
            Some(_) => Err(AppError::invalid(
                "region_unavailable",
                format!("region {code} is not available"),
            )),
            None => Err(AppError::invalid(
                "unknown_region",
                format!("unknown region {code}"),
            )),
        }
    }
}
