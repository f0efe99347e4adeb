//! The public dirty set (`<ns>:dirty`): anyone may `SADD` a group to it, and the leading
//! producer's next dirty-mode tick takes it whole.

use std::sync::LazyLock;

use ranq_core::GroupId;

use crate::{Cache, CacheError};

static CLAIM_DIRTY: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/claim_dirty.lua")));

impl Cache {
    /// Adds groups to the dirty set; returns how many were not already marked.
    pub async fn mark_dirty(&self, groups: &[GroupId]) -> Result<u64, CacheError> {
        if groups.is_empty() {
            return Ok(0);
        }
        Ok(redis::cmd("SADD").arg(self.keys.dirty()).arg(groups).query_async(&mut self.conn()).await?)
    }

    /// Takes the dirty set for one tick (see `claim_dirty.lua`): the marks move aside, where
    /// they stay until [`Cache::release_dirty_claim`], so a tick that dies before enqueueing them
    /// leaves them to the next. Marks that are not group ids are dropped with a warning.
    pub async fn claim_dirty(&self) -> Result<Vec<GroupId>, CacheError> {
        let raw: Vec<String> =
            CLAIM_DIRTY.key(self.keys.dirty()).key(self.keys.dirty_claimed()).invoke_async(&mut self.conn()).await?;
        let mut groups = Vec::with_capacity(raw.len());
        for member in raw {
            match ranq_core::parse_group_id(&member) {
                Ok(g) => groups.push(g),
                Err(e) => tracing::warn!(%e, "ignoring a dirty mark that is not a group id"),
            }
        }
        Ok(groups)
    }

    /// Forgets the marks taken by [`Cache::claim_dirty`], once every one of them is enqueued.
    pub async fn release_dirty_claim(&self) -> Result<(), CacheError> {
        Ok(redis::cmd("DEL").arg(self.keys.dirty_claimed()).query_async::<()>(&mut self.conn()).await?)
    }
}
