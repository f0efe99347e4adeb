//! What a `REDIS_URL` names: one server (`redis://`, `rediss://`, `redis+unix://`), a master
//! found through Sentinel (`redis+sentinel://` and, with TLS, `rediss+sentinel://`), or a Redis
//! Cluster reached through a few of its nodes (`redis+cluster://`, `rediss+cluster://`).

use crate::error::{NOT_A_REDIS_URL, RedisError};

/// The default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;
/// The default port of a data node.
const REDIS_PORT: u16 = 6379;

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server, at this URL.
    Direct(String),
    Sentinel(SentinelTarget),
    Cluster(ClusterTarget),
}

/// A Redis Cluster, first asked for its layout at `seeds` (any of its nodes will do; more than
/// one, so that start-up does not depend on one node being up).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ClusterTarget {
    pub seeds: Vec<(String, u16)>,
    pub tls: bool,
    pub insecure: bool,
    /// `user:password@`, or `:password@`, for every node (empty: none).
    pub credentials: String,
}

impl std::fmt::Debug for ClusterTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTarget")
            .field("seeds", &self.seeds)
            .field("tls", &self.tls)
            .field("credentials", &if self.credentials.is_empty() { "" } else { "***" })
            .finish()
    }
}

impl ClusterTarget {
    /// The URL of the node at `host:port`, with this target's credentials and TLS.
    pub fn node_url(&self, host: &str, port: u16) -> String {
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        let scheme = if self.tls { "rediss" } else { "redis" };
        let fragment = if self.tls && self.insecure { "#insecure" } else { "" };
        format!("{scheme}://{}{host}:{port}{fragment}", self.credentials)
    }
}

/// A master named `master`, found by asking `sentinels`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SentinelTarget {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    /// TLS to the sentinels and the data nodes.
    pub tls: bool,
    /// `#insecure`: TLS without verifying certificates (a test deployment only).
    pub insecure: bool,
    /// `user:password@`, or `:password@`, for the data nodes (empty: none).
    pub credentials: String,
    pub db: i64,
}

// By hand, so that no debug line can show a password.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Direct(url) => f.debug_tuple("Direct").field(&ranq_core::redact_url(url)).finish(),
            Self::Sentinel(target) => f.debug_tuple("Sentinel").field(target).finish(),
            Self::Cluster(target) => f.debug_tuple("Cluster").field(target).finish(),
        }
    }
}

impl std::fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelTarget")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("tls", &self.tls)
            .field("insecure", &self.insecure)
            .field("credentials", &if self.credentials.is_empty() { "" } else { "***" })
            .field("db", &self.db)
            .finish()
    }
}

impl SentinelTarget {
    /// The URL of a data node at `host:port`, with this target's credentials, TLS and database.
    pub fn node_url(&self, host: &str, port: u16) -> String {
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        format!("{}://{}{host}:{port}/{}{}", self.scheme(), self.credentials, self.db, self.fragment())
    }

    /// The URL of a sentinel, with `auth` (`user:password@`, `:password@` or empty).
    pub fn sentinel_url(&self, (host, port): &(String, u16), auth: &str) -> String {
        format!("{}://{auth}{host}:{port}{}", self.scheme(), self.fragment())
    }

    /// The credentials to try on a sentinel, in turn. Sentinels are often open to anyone who can
    /// reach them and refuse an `AUTH`, so none first; then the URL's; then its password alone,
    /// for a sentinel that has a `requirepass` but not the data nodes' ACL user.
    pub fn sentinel_auths(&self) -> Vec<String> {
        let mut auths = vec![String::new()];
        if !self.credentials.is_empty() {
            auths.push(self.credentials.clone());
            if let Some((user, password)) = self.credentials.trim_end_matches('@').split_once(':') {
                if !user.is_empty() {
                    auths.push(format!(":{password}@"));
                }
            }
        }
        auths
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "rediss" } else { "redis" }
    }

    fn fragment(&self) -> &'static str {
        if self.tls && self.insecure { "#insecure" } else { "" }
    }
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, &'static str> {
        if let Some((tls, rest)) = strip_either(url, "redis+cluster://", "rediss+cluster://") {
            return Self::parse_cluster(tls, rest);
        }
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return redis::Client::open(url).map(|_| Self::Direct(url.to_owned())).map_err(|_| NOT_A_REDIS_URL);
        };
        let (authority, path) = rest.split_once('/').ok_or(NOT_A_REDIS_URL)?;
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let sentinels = host_list(hosts, SENTINEL_PORT)?;
        let insecure = path.ends_with("#insecure");
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let mut parts = path.split('/');
        let master = parts.next().filter(|m| !m.is_empty()).ok_or(NOT_A_REDIS_URL)?.to_owned();
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(db) => db.parse().map_err(|_| NOT_A_REDIS_URL)?,
            None => 0,
        };
        Ok(Self::Sentinel(SentinelTarget { sentinels, master, tls, insecure, credentials, db }))
    }

    /// `[user:password@]host1:port1,host2:port2[/][#insecure]`: a cluster has one database, so
    /// a path may name only database 0.
    fn parse_cluster(tls: bool, rest: &str) -> Result<Self, &'static str> {
        let insecure = rest.ends_with("#insecure");
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !matches!(path, "" | "0") {
            return Err(NOT_A_REDIS_URL);
        }
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let seeds = host_list(hosts, REDIS_PORT)?;
        Ok(Self::Cluster(ClusterTarget { seeds, tls, insecure, credentials }))
    }

    pub fn parse_for(url: &str) -> Result<Self, RedisError> {
        Self::parse(url).map_err(|_| RedisError::BadUrl { url: ranq_core::redact_url(url) })
    }
}

/// `url` without whichever of the two prefixes it has, and whether it was the TLS one.
fn strip_either<'a>(url: &'a str, plain: &str, tls: &str) -> Option<(bool, &'a str)> {
    url.strip_prefix(plain).map(|rest| (false, rest)).or_else(|| url.strip_prefix(tls).map(|rest| (true, rest)))
}

/// `h1:p1,h2,…`, a host without a port taking `default_port`.
fn host_list(hosts: &str, default_port: u16) -> Result<Vec<(String, u16)>, &'static str> {
    hosts
        .split(',')
        .map(|host| match host.rsplit_once(':') {
            Some((name, port)) if !name.is_empty() => Ok((name.to_owned(), port.parse().map_err(|_| NOT_A_REDIS_URL)?)),
            None if !host.is_empty() => Ok((host.to_owned(), default_port)),
            _ => Err(NOT_A_REDIS_URL),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_their_sentinels_master_credentials_and_database() {
        let Ok(Target::Sentinel(t)) = Target::parse("redis+sentinel://:pw@s1:26380,s2/mymaster/3") else {
            panic!("a sentinel URL")
        };
        assert_eq!(t.sentinels, vec![("s1".to_owned(), 26380), ("s2".to_owned(), 26379)]);
        assert_eq!((t.master.as_str(), t.db, t.tls), ("mymaster", 3, false));
        assert_eq!(t.node_url("10.0.0.5", 6380), "redis://:pw@10.0.0.5:6380/3");
        assert_eq!(t.sentinel_auths(), ["", ":pw@"]);
        assert_eq!(t.sentinel_url(&t.sentinels[0], ":pw@"), "redis://:pw@s1:26380");
        let Ok(Target::Sentinel(t)) = Target::parse("redis+sentinel://ranq:pw@s1/m") else { panic!("ACL user") };
        assert_eq!(t.sentinel_auths(), ["", "ranq:pw@", ":pw@"]);
        let Ok(Target::Sentinel(t)) = Target::parse("rediss+sentinel://s1/m") else { panic!("TLS sentinel URL") };
        assert_eq!(
            (t.node_url("h", 1), t.sentinel_url(&t.sentinels[0], "")),
            ("rediss://h:1/0".into(), "rediss://s1:26379".into())
        );
        let Ok(Target::Sentinel(t)) = Target::parse("rediss+sentinel://s1/m/2#insecure") else { panic!("insecure") };
        assert_eq!(
            (t.node_url("h", 1), t.sentinel_url(&t.sentinels[0], "")),
            ("rediss://h:1/2#insecure".into(), "rediss://s1:26379#insecure".into())
        );
    }

    #[test]
    fn cluster_urls_name_their_seeds_and_credentials() {
        let Ok(Target::Cluster(t)) = Target::parse("redis+cluster://ranq:pw@n1:7000,n2") else {
            panic!("a cluster URL")
        };
        assert_eq!(t.seeds, vec![("n1".to_owned(), 7000), ("n2".to_owned(), 6379)]);
        assert_eq!(t.node_url("n1", 7000), "redis://ranq:pw@n1:7000");
        let Ok(Target::Cluster(t)) = Target::parse("rediss+cluster://n1:7000/#insecure") else { panic!("TLS") };
        assert_eq!(t.node_url("10.0.0.7", 7001), "rediss://10.0.0.7:7001#insecure");
        let Ok(Target::Cluster(t)) = Target::parse("redis+cluster://[::1]:7000") else { panic!("IPv6") };
        assert_eq!(t.node_url(&t.seeds[0].0, t.seeds[0].1), "redis://[::1]:7000");
        assert_eq!(t.node_url("::1", 7001), "redis://[::1]:7001");
        assert!(
            !format!("{:?}", Target::parse("redis+cluster://u:secret@n1").expect("a cluster URL")).contains("secret")
        );
    }

    #[test]
    fn urls_that_name_nothing_are_refused() {
        for url in [
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1:x/m",
            "localhost:6379",
            "redis+cluster://",
            "redis+cluster://n1:7000/3",
            "redis+cluster://n1:x",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
        assert_eq!(Target::parse("redis://h:6379/0"), Ok(Target::Direct("redis://h:6379/0".into())));
    }
}
