//! Gradual migration from one deployment of a backend to another: which version a request goes
//! to. A user's place on the rollout line is a stable hash of a salt and the verified subject,
//! so the same user always lands on the same version, and raising a percentage only adds users
//! (nobody flips back and forth). Reads and writes have their own percentage, so reads can move
//! first, as Mercari moved its ACL service.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One backend service moving to a new deployment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// The gRPC service moving, e.g. `catalog.CatalogService`.
    pub service: String,
    /// The Envoy cluster of the new deployment.
    pub cluster: String,
    /// Share of users whose reads go to the new deployment (0–100; fractions allowed).
    #[serde(default)]
    pub reads_percent: f64,
    /// Share of users whose writes go to the new deployment.
    #[serde(default)]
    pub writes_percent: f64,
    /// Places users on the line; a new salt deals everyone a new place.
    pub salt: String,
    /// gRPC methods that only read (`GetItem`); every other method is a write. For JSON
    /// routes, GET and HEAD read and every other method writes.
    #[serde(default)]
    pub read_methods: Vec<String>,
}

/// How many places the line has: percentages resolve to 0.01%.
const PLACES: u64 = 10_000;

/// A key's place on the line of `salt`, in `0..10_000`: the first eight bytes of
/// SHA-256(`salt` NUL `key`), modulo the line's length.
pub fn place(salt: &str, key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % PLACES
}

impl Rollout {
    /// Whether a request goes to the new deployment. `key`: the verified subject (sticky per
    /// user), or for anonymous requests the request id (split per request).
    pub fn takes(&self, read: bool, key: &str) -> bool {
        match self.threshold(read) {
            0 => false,
            PLACES => true,
            threshold => place(&self.salt, key) < threshold,
        }
    }

    /// Whether any request of this kind moves at all (no key needed to know).
    pub fn moves(&self, read: bool) -> bool {
        self.threshold(read) > 0
    }

    /// How many places of the line move.
    fn threshold(&self, read: bool) -> u64 {
        let percent = if read {
            self.reads_percent
        } else {
            self.writes_percent
        };
        (percent.clamp(0.0, 100.0) * (PLACES as f64 / 100.0)).round() as u64
    }

    /// Whether a gRPC method (the last segment of `/pkg.Service/Method`) only reads.
    pub fn reads(&self, method: &str) -> bool {
        self.read_methods.iter().any(|m| m == method)
    }

    pub fn check(&self) -> Result<(), String> {
        for (what, percent) in [
            ("reads", self.reads_percent),
            ("writes", self.writes_percent),
        ] {
            if !(0.0..=100.0).contains(&percent) {
                return Err(format!(
                    "rollout of {}: {what}_percent {percent} is not within 0–100",
                    self.service
                ));
            }
        }
        if self.salt.is_empty() || self.cluster.is_empty() {
            return Err(format!(
                "rollout of {}: cluster and salt are required",
                self.service
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(reads: f64, writes: f64) -> Rollout {
        Rollout {
            service: "catalog.CatalogService".into(),
            cluster: "catalog-v2".into(),
            reads_percent: reads,
            writes_percent: writes,
            salt: "s".into(),
            read_methods: vec!["GetItem".into()],
        }
    }

    fn users() -> Vec<String> {
        (0..10_000).map(|i| format!("user-{i}")).collect()
    }

    #[test]
    fn shares_match_the_percentages() {
        for percent in [0.0, 0.4, 10.0, 50.0, 100.0] {
            let taken = users()
                .iter()
                .filter(|u| rollout(percent, 0.0).takes(true, u))
                .count() as f64;
            let share = taken / 100.0;
            assert!((share - percent).abs() <= 1.0, "{percent}% → {share}%");
        }
    }

    #[test]
    fn raising_a_percentage_only_adds_users() {
        let users = users();
        let mut previous: Vec<&String> = Vec::new();
        for percent in [1.0, 10.0, 20.0, 50.0, 100.0] {
            let now: Vec<&String> = users
                .iter()
                .filter(|u| rollout(percent, 0.0).takes(true, u))
                .collect();
            assert!(previous.iter().all(|u| now.contains(u)), "{percent}%");
            previous = now;
        }
        assert_eq!(previous.len(), users.len());
    }

    #[test]
    fn reads_and_writes_move_separately_and_the_salt_reshuffles() {
        let half_reads = rollout(50.0, 0.0);
        assert!(users().iter().all(|u| !half_reads.takes(false, u)));
        let other_salt = Rollout {
            salt: "t".into(),
            ..half_reads.clone()
        };
        let differ = users()
            .iter()
            .filter(|u| half_reads.takes(true, u) != other_salt.takes(true, u))
            .count();
        assert!(differ > 3_000, "{differ}");
        assert!(half_reads.reads("GetItem") && !half_reads.reads("CreateItem"));
    }

    #[test]
    fn places_are_stable() {
        // A change here would move every user of a running rollout: never change the hash.
        assert_eq!(place("s", "user-1"), place("s", "user-1"));
        assert_eq!(
            place("catalog-v2", "7c0cde05-4df0-47f4-94c4-978dd9f56e5c"),
            PINNED
        );
    }

    const PINNED: u64 = 7975;

    #[test]
    fn bad_percentages_are_refused() {
        assert!(rollout(101.0, 0.0).check().is_err());
        assert!(rollout(10.0, -1.0).check().is_err());
        assert!(rollout(10.0, 0.0).check().is_ok());
    }
}
