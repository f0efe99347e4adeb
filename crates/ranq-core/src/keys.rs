//! Every Redis key ranq uses, in one place.
//!
//! Architecture Invariant: every key starts with `<ns>:`, and every per-group key carries the group
//! in a hash tag (`{42}`), so two fleets can share one Redis and all of a group's keys land in the
//! same Redis Cluster slot (which the multi-key fence script needs).

use crate::ids::GroupId;

/// Key builder for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    ns: String,
}

impl Keys {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { ns: namespace.into() }
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// `<ns>:top:{<group>}` — the group's snapshot JSON (public: anyone may read it).
    pub fn top(&self, group: GroupId) -> String {
        format!("{}:top:{{{group}}}", self.ns)
    }

    /// `<ns>:gone:{<group>}` — tombstone holding the version at which the group was found absent
    /// from the source, so that a late refresh cannot resurrect a deleted group.
    pub fn gone(&self, group: GroupId) -> String {
        format!("{}:gone:{{{group}}}", self.ns)
    }

    /// `<ns>:top:*` — pattern matching every snapshot key.
    pub fn top_pattern(&self) -> String {
        format!("{}:top:*", self.ns)
    }

    /// `<ns>:dirty` — the public set of groups to refresh next tick.
    pub fn dirty(&self) -> String {
        format!("{}:dirty", self.ns)
    }

    /// `<ns>:index` — sorted set of cached groups scored by snapshot version; lets `status` count
    /// FRESH / STALE / MISS with two `ZCOUNT`s instead of reading every snapshot.
    pub fn index(&self) -> String {
        format!("{}:index", self.ns)
    }

    /// `<ns>:written` — pub/sub channel: comma-separated groups whose snapshot (or quarantine flag)
    /// may have just changed, so read processes drop their in-memory copies at once.
    pub fn written_channel(&self) -> String {
        format!("{}:written", self.ns)
    }

    /// `<ns>:{queue}` — the apalis-redis queue name; apalis derives its own keys from it, so
    /// they all share the `{queue}` hash tag: its scripts touch several of them at once, which
    /// Redis Cluster allows only within one slot.
    pub fn queue(&self) -> String {
        format!("{}:{{queue}}", self.ns)
    }

    /// `<ns>:{queue}:registry` — where apalis-redis registers the queue's workers set (its
    /// `core:apalis:queues:list` unless told otherwise), in the queue's slot and namespace.
    pub fn queue_registry(&self) -> String {
        format!("{}:registry", self.queue())
    }

    /// `<ns>:{producer}:tick:<id>` — claim of one scheduled tick, so a tick is enqueued once per
    /// fleet. The producer's keys share the `{producer}` hash tag so its scripts may touch several.
    pub fn tick_claim(&self, tick_id: &str) -> String {
        format!("{}:{{producer}}:tick:{tick_id}", self.ns)
    }

    /// `<ns>:{producer}:ticks` — hash of tick counters (`enqueued`, `duplicates_skipped`, `missed`).
    pub fn ticks(&self) -> String {
        format!("{}:{{producer}}:ticks", self.ns)
    }

    /// `<ns>:{producer}:last_tick` — JSON `{id, at, groups, deferred}` of the last enqueued tick.
    pub fn last_tick(&self) -> String {
        format!("{}:{{producer}}:last_tick", self.ns)
    }

    /// `<ns>:{producer}:leader` — the producer leader lease (`<token>|<holder>|<since ms>`).
    pub fn leader(&self) -> String {
        format!("{}:{{producer}}:leader", self.ns)
    }

    /// `<ns>:{producer}:leader_token` — the fencing-token counter; every new lease takes the next.
    pub fn leader_token(&self) -> String {
        format!("{}:{{producer}}:leader_token", self.ns)
    }

    /// `<ns>:dirty:claimed{<ns>:dirty}` — dirty marks taken by a tick and not yet enqueued;
    /// merged back into the dirty set by the next leader if the tick's producer died mid-tick.
    /// The set is `RENAME`d from `<ns>:dirty`, whose name is public and has no hash tag, so this
    /// key's tag is that whole name: both hash to one Redis Cluster slot.
    pub fn dirty_claimed(&self) -> String {
        format!("{ns}:dirty:claimed{{{ns}:dirty}}", ns = self.ns)
    }

    /// `<ns>:{quarantine}:failures` — hash of group → [`crate::GroupHealth`] JSON, for groups
    /// whose last refresh failed. Shares its hash tag with `quarantine_due` so one script updates
    /// both.
    pub fn quarantine_failures(&self) -> String {
        format!("{}:{{quarantine}}:failures", self.ns)
    }

    /// `<ns>:{quarantine}:due` — sorted set of quarantined groups scored by when (ms) they are
    /// next retried; the producer leaves them out of ticks until then.
    pub fn quarantine_due(&self) -> String {
        format!("{}:{{quarantine}}:due", self.ns)
    }

    /// `<ns>:*` — everything this fleet owns (used to clean a namespace).
    pub fn all_pattern(&self) -> String {
        format!("{}:*", self.ns)
    }

    /// Recovers the group id from a snapshot key, if it is one of ours.
    pub fn group_of_top_key(&self, key: &str) -> Option<GroupId> {
        let rest = key.strip_prefix(&self.ns)?.strip_prefix(":top:{")?;
        rest.strip_suffix('}')?.parse().ok()
    }
}

/// One row of the Redis layout: a key (or channel) with placeholders, its type, what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDoc {
    pub key: String,
    pub kind: &'static str,
    pub meaning: &'static str,
}

impl Keys {
    /// Every key and channel ranq uses, written by the same builders the code uses, with
    /// `<ns>`, `<group>` and `<id>` for the parts that vary. `docs/reference/redis-layout.md` is
    /// generated from it.
    pub fn layout() -> Vec<KeyDoc> {
        let k = Keys::new("<ns>");
        // Builders take a group id; 0 stands in for it and is then named.
        let g = |key: String| key.replace("{0}", "{<group>}");
        let row = |key: String, kind, meaning| KeyDoc { key, kind, meaning };
        vec![
            row(g(k.top(0)), "string (JSON)", "the group's snapshot: all the read side needs"),
            row(g(k.gone(0)), "string", "tombstone: the version at which the group was found absent (1 h)"),
            row(k.dirty(), "set", "public: `SADD` a group id to have it refreshed by the next dirty-mode tick"),
            row(
                k.dirty_claimed(),
                "set",
                "marks taken by a tick until its jobs are enqueued (tagged to share `<ns>:dirty`'s Cluster slot)",
            ),
            row(k.index(), "sorted set", "cached group → snapshot version, for freshness counts and ages"),
            row(
                k.written_channel(),
                "pub/sub channel",
                "groups just written (comma-separated), so read processes drop their copies",
            ),
            row(
                k.quarantine_failures(),
                "hash",
                "group → its run of failed refreshes (count, last error, quarantined)",
            ),
            row(k.quarantine_due(), "sorted set", "quarantined group → when it is next retried (ms)"),
            row(k.leader(), "string", "the leader lease, `<token>|<holder>|<since ms>`"),
            row(k.leader_token(), "string", "the fencing-token counter; every new lease takes the next"),
            row(
                k.tick_claim("<id>"),
                "string",
                "the claim of one scheduled tick (its id is its time, RFC 3339), kept a day",
            ),
            row(k.ticks(), "hash", "tick counters: `enqueued`, `duplicates_skipped`, `missed`"),
            row(k.last_tick(), "string (JSON)", "the last enqueued tick: `{id, at, groups, deferred}`"),
            row(
                format!("{}:*", k.queue()),
                "(apalis-redis)",
                "the refresh queue: jobs, their metadata, workers, the dead letter (one Cluster slot)",
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_are_namespaced_and_hash_tagged() {
        let k = Keys::new("ranq");
        assert_eq!(k.top(42), "ranq:top:{42}");
        assert_eq!(k.gone(42), "ranq:gone:{42}");
        assert_eq!(k.dirty(), "ranq:dirty");
        assert_eq!(k.queue(), "ranq:{queue}");
        assert_eq!(k.queue_registry(), "ranq:{queue}:registry");
        assert_eq!(k.group_of_top_key("ranq:top:{42}"), Some(42));
        assert_eq!(k.group_of_top_key("other:top:{42}"), None);
    }

    #[test]
    fn the_layout_names_every_key_under_the_namespace() {
        let layout = Keys::layout();
        assert!(layout.iter().all(|row| row.key.starts_with("<ns>:")), "{layout:?}");
        assert!(layout.iter().any(|row| row.key == "<ns>:top:{<group>}"));
        let mut keys: Vec<&str> = layout.iter().map(|row| row.key.as_str()).collect();
        keys.dedup();
        assert_eq!(keys.len(), layout.len());
    }

    #[test]
    fn every_key_lives_under_the_namespace() {
        let k = Keys::new("fleet-a");
        for key in [
            k.top(1),
            k.gone(1),
            k.dirty(),
            k.index(),
            k.written_channel(),
            k.queue(),
            k.tick_claim("x"),
            k.ticks(),
            k.last_tick(),
            k.leader(),
            k.leader_token(),
            k.dirty_claimed(),
            k.quarantine_failures(),
            k.quarantine_due(),
        ] {
            assert!(key.starts_with("fleet-a:"), "{key}");
        }
    }

    /// The part of a key Redis Cluster hashes: the first non-empty `{…}`, else the whole key.
    fn hashed_part(key: &str) -> &str {
        key.find('{')
            .and_then(|open| key[open + 1..].find('}').filter(|&len| len > 0).map(|len| &key[open + 1..open + 1 + len]))
            .unwrap_or(key)
    }

    #[test]
    fn keys_moved_between_by_one_command_hash_to_one_cluster_slot() {
        let k = Keys::new("fleet-a");
        assert_eq!(hashed_part(&k.dirty_claimed()), hashed_part(&k.dirty()));
        assert_eq!(hashed_part(&k.top(7)), hashed_part(&k.gone(7)));
        assert_eq!(hashed_part(&k.quarantine_failures()), hashed_part(&k.quarantine_due()));
        assert_eq!(hashed_part(&k.leader()), hashed_part(&k.leader_token()));
    }
}
