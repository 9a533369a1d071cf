//! Keycloak's users, page by page, and any listing read to its end.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::base::clock::now_ms;
use crate::base::deadline;
use crate::outside::keycloak::{KeycloakClient, KeycloakError, UserRepresentation};

/// One Keycloak user as the sync sees it: identity, business attributes, when it was read.
pub(super) struct Observed {
    pub(super) rep: UserRepresentation,
    pub(super) at: i64,
}

/// Every user, page by page: `concurrency` pages in flight, handed out a group of pages at a time
/// until a short page, so that no more than a group is ever held. A page that fails after the
/// client's retries makes the crawl incomplete.
pub(super) struct Crawl {
    kc: Arc<KeycloakClient>,
    page: u32,
    concurrency: usize,
    first: u32,
    /// How many users Keycloak counted when the crawl began (0 if it could not say).
    pub(super) counted: u64,
    pub(super) complete: bool,
    done: bool,
}

impl Crawl {
    pub(super) async fn start(kc: &Arc<KeycloakClient>, page: u32, concurrency: usize) -> Self {
        let counted = kc.count_users().await.unwrap_or(0);
        Crawl {
            kc: Arc::clone(kc),
            page,
            concurrency,
            first: 0,
            counted,
            complete: true,
            done: false,
        }
    }

    /// The next group of users, or `None` when the crawl is over.
    pub(super) async fn next(&mut self, errors: &mut Vec<String>) -> Option<Vec<Observed>> {
        if self.done {
            return None;
        }
        // A server that never answers a short page must not keep us paging forever.
        let ceiling = match self.counted {
            0 => u64::MAX,
            c => c.saturating_add(10 * u64::from(self.page)),
        };
        if u64::from(self.first) > ceiling {
            errors.push(format!(
                "crawl stopped at offset {}: more pages than users",
                self.first
            ));
            (self.complete, self.done) = (false, true);
            return None;
        }
        let mut set = JoinSet::new();
        for i in 0..self.concurrency as u32 {
            let kc = Arc::clone(&self.kc);
            let (offset, page) = (self.first + i * self.page, self.page);
            // Stamped when asked: Keycloak's answer is at least this new, and a login that
            // lands while the page is in flight must not lose to it.
            set.spawn(deadline::carried(async move {
                let asked = now_ms();
                (offset, kc.list_users(offset, page, false).await, asked)
            }));
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            results.extend(page_read(joined, &mut self.complete, errors));
        }
        results.sort_by_key(|(offset, _, _)| *offset);
        let mut users = Vec::new();
        let mut short = false;
        let mut any_ok = false;
        for (offset, result, at) in results {
            match result {
                Ok(list) => {
                    any_ok = true;
                    short |= (list.len() as u32) < self.page;
                    users.extend(list.into_iter().map(|rep| Observed { rep, at }));
                }
                Err(e) => {
                    self.complete = false;
                    errors.push(format!("page at {offset}: {e}"));
                }
            }
        }
        if short || !any_ok {
            self.done = true;
            self.complete &= any_ok;
        }
        self.first += self.concurrency as u32 * self.page;
        Some(users)
    }
}

/// One crawl page as its task read it: offset, users, when.
type PageRead = (u32, Result<Vec<UserRepresentation>, KeycloakError>, i64);

/// A page task's result. A task that panicked or was cancelled is a page nobody read: the crawl
/// is incomplete, so it deactivates nobody.
fn page_read(
    joined: Result<PageRead, tokio::task::JoinError>,
    complete: &mut bool,
    errors: &mut Vec<String>,
) -> Option<PageRead> {
    match joined {
        Ok(page) => Some(page),
        Err(e) => {
            *complete = false;
            errors.push(format!("a page task failed: {e}"));
            None
        }
    }
}

/// Every item of a listing read `size` at a time, until a short page.
pub(super) async fn all_pages<T, F, Fut>(size: u32, mut page: F) -> Result<Vec<T>, KeycloakError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, KeycloakError>>,
{
    let mut all = Vec::new();
    let mut first = 0;
    loop {
        let items = page(first).await?;
        let short = (items.len() as u32) < size;
        all.extend(items);
        if short {
            return Ok(all);
        }
        first += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_crawl_page_task_that_panics_makes_the_crawl_incomplete() {
        let joined = tokio::spawn(async {
            if true {
                panic!("a page task panicked");
            }
            (0u32, Ok(Vec::new()), 0i64)
        })
        .await;
        let (mut complete, mut errors) = (true, Vec::new());
        assert!(page_read(joined, &mut complete, &mut errors).is_none());
        assert!(!complete);
        assert!(errors[0].contains("page task failed"), "{errors:?}");
    }
}
