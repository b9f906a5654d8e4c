//! The policies a store knows: one quota per name.

use std::sync::{Arc, Mutex, PoisonError};

use smallvec::SmallVec;

use crate::{ConfigError, Policy, Quota};

/// The policy names registered with one store, each with its quota; a policy's id is its index.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    known: Mutex<Vec<(Arc<str>, Quota)>>,
}

impl Registry {
    /// The id of each of `policies`, registering the names not seen before; or, registering
    /// nothing, an error naming a policy known with another quota.
    pub(crate) fn register(&self, policies: &[Policy]) -> Result<SmallVec<[u32; 2]>, ConfigError> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let before = known.len();
        let mut ids = SmallVec::new();
        for policy in policies {
            let id = match known.iter().position(|(name, _)| **name == *policy.name()) {
                Some(id) if known[id].1 == *policy.quota() => id,
                Some(id) => {
                    let error = ConfigError::new(format!(
                        "policy {:?} is already registered on this store with quota {}, not {}: \
                         give the new policy a name of its own, or the same quota to share its \
                         budget",
                        policy.name(),
                        known[id].1,
                        policy.quota()
                    ));
                    known.truncate(before);
                    return Err(error);
                }
                None => {
                    known.push((policy.name().into(), *policy.quota()));
                    known.len() - 1
                }
            };
            // Far fewer than 2^32 policies fit in memory.
            ids.push(id as u32);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_one_quota_and_a_refusal_registers_nothing() {
        let registry = Registry::default();
        let a = || Policy::new("a", Quota::per_second(1));
        assert_eq!(&registry.register(&[a()]).unwrap()[..], [0]);
        assert_eq!(&registry.register(&[a()]).unwrap()[..], [0]);
        let fresh = Policy::new("fresh", Quota::per_second(1));
        let other_a = Policy::new("a", Quota::per_second(2));
        let err = registry.register(&[fresh, other_a]).unwrap_err();
        assert!(err.to_string().contains("\"a\""), "{err}");
        // "fresh" went with the refused call.
        let fresh_again = Policy::new("fresh", Quota::per_second(9));
        assert_eq!(&registry.register(&[fresh_again]).unwrap()[..], [1]);
    }
}
