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
    /// nothing, an error: no policy, one policy twice in the stack, or a name known (or named
    /// before in the stack) with another quota.
    pub(crate) fn register(&self, policies: &[Policy]) -> Result<SmallVec<[u32; 2]>, ConfigError> {
        if policies.is_empty() {
            return Err(ConfigError::new(
                "a stack of no policies was registered with a store: give it at least one policy",
            ));
        }
        // What a layer refuses, every store refuses: a store used on its own must not take a
        // name it cannot keep (the Redis script ends each name with a zero byte).
        for policy in policies {
            policy.validate()?;
        }
        // The same name with another quota is the conflict below, as across stacks.
        let same = |a: &Policy, b: &Policy| a.name() == b.name() && a.quota() == b.quota();
        for (i, policy) in policies.iter().enumerate() {
            if let Some(first) = policies[..i].iter().position(|p| same(p, policy)) {
                return Err(ConfigError::new(format!(
                    "policy {:?} is named twice in one stack (at {first} and {i}): a stack \
                     counts each policy once; give the second a name of its own",
                    policy.name(),
                )));
            }
        }
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

    #[test]
    fn a_name_the_layer_refuses_is_refused_and_registers_nothing() {
        let registry = Registry::default();
        let fine = Policy::new("fine", Quota::per_second(1));
        for name in ["a\0b", "", "curly{", "caf\u{e9}", &"x".repeat(65)] {
            let bad = Policy::new(name, Quota::per_minute(1));
            let err = registry.register(&[fine.clone(), bad]).unwrap_err();
            assert!(
                err.to_string().contains("cannot be used"),
                "{name:?}: {err}"
            );
        }
        // "fine" went with every refused call.
        let fine_again = Policy::new("fine", Quota::per_second(9));
        assert_eq!(&registry.register(&[fine_again]).unwrap()[..], [0]);
    }

    #[test]
    fn a_stack_needs_a_policy_and_each_name_once() {
        let registry = Registry::default();
        let err = registry.register(&[]).unwrap_err();
        assert!(err.to_string().contains("no policies"), "{err}");
        let a = Policy::new("a", Quota::per_second(1));
        let b = Policy::new("b", Quota::per_second(1));
        let err = registry.register(&[a.clone(), b, a]).unwrap_err();
        assert!(err.to_string().contains("\"a\" is named twice"), "{err}");
        assert!(err.to_string().contains("at 0 and 2"), "{err}");
        // One name with two quotas in one stack is the conflict of two quotas.
        let other_b = Policy::new("b", Quota::per_second(2));
        let err = registry
            .register(&[Policy::new("b", Quota::per_second(1)), other_b])
            .unwrap_err();
        assert!(err.to_string().contains("already registered"), "{err}");
        // Nothing was registered by either.
        let other_a = Policy::new("a", Quota::per_second(5));
        assert_eq!(&registry.register(&[other_a]).unwrap()[..], [0]);
    }
}
