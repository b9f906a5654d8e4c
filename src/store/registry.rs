//! The policies a store knows: one quota per name.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use smallvec::SmallVec;

use crate::{ConfigError, Policy, Quota};

/// The policy names registered with one store, each with its quota and id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    known: Mutex<Vec<(Arc<str>, Quota, u32)>>,
}

/// The next policy id. Ids are unique in the process, not only in their store: a stack used
/// on another store than the one that registered it (not a clone of it, which shares its
/// registry) counts there apart from that store's policies, never in their states.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// The last id a process can give: `u32::MAX` marks a state that holds no policy yet.
const LAST_ID: u32 = u32::MAX - 1;

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
        for (i, policy) in policies.iter().enumerate() {
            let named = policies[..i].iter().position(|p| p.name() == policy.name());
            let Some(first) = named else { continue };
            let quota = policies[first].quota();
            let why = match quota == policy.quota() {
                true => "a stack counts each policy once".to_owned(),
                false => format!(
                    "with quota {quota}, then {}: a name is one budget, of one quota",
                    policy.quota()
                ),
            };
            return Err(ConfigError::new(format!(
                "policy {:?} is named twice in one stack (at {first} and {i}), {why}; give the \
                 second a name of its own",
                policy.name(),
            )));
        }
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let before = known.len();
        let ids: Result<SmallVec<_>, _> = policies
            .iter()
            .map(|policy| id_of(&mut known, policy))
            .collect();
        if ids.is_err() {
            known.truncate(before);
        }
        ids
    }
}

/// The id of `policy` in `known`, given a new one if its name is not there yet; an error if
/// the name is there with another quota, or if the process has no id left to give.
fn id_of(known: &mut Vec<(Arc<str>, Quota, u32)>, policy: &Policy) -> Result<u32, ConfigError> {
    match known.iter().find(|(name, ..)| **name == *policy.name()) {
        Some((_, quota, id)) if quota == policy.quota() => Ok(*id),
        Some((_, quota, _)) => Err(ConfigError::new(format!(
            "policy {:?} is already registered on this store with quota {quota}, not {}: give \
             the new policy a name of its own, or the same quota to share its budget",
            policy.name(),
            policy.quota()
        ))),
        None => {
            let next = |id: u32| (id <= LAST_ID).then_some(id + 1);
            let id = NEXT_ID
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, next)
                .map_err(|_| {
                    ConfigError::new(
                        "this process has registered 2^32 - 1 policies with its stores, the \
                         most it can tell apart: register each stack once and reuse it, and \
                         reuse stores",
                    )
                })?;
            known.push((policy.name().into(), *policy.quota(), id));
            Ok(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_one_quota_and_a_refusal_registers_nothing() {
        let registry = Registry::default();
        let a = || Policy::new("a", Quota::per_second(1));
        let id = registry.register(&[a()]).unwrap()[0];
        assert_eq!(&registry.register(&[a()]).unwrap()[..], [id]);
        let fresh = Policy::new("fresh", Quota::per_second(1));
        let other_a = Policy::new("a", Quota::per_second(2));
        let err = registry.register(&[fresh, other_a]).unwrap_err();
        assert!(err.to_string().contains("\"a\""), "{err}");
        // "fresh" went with the refused call: another quota is taken.
        let fresh_again = Policy::new("fresh", Quota::per_second(9));
        assert!(registry.register(&[fresh_again]).is_ok());
        assert_eq!(&registry.register(&[a()]).unwrap()[..], [id]);
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
        // "fine" went with every refused call: another quota is taken.
        let fine_again = Policy::new("fine", Quota::per_second(9));
        assert!(registry.register(&[fine_again]).is_ok());
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
        // One name with two quotas in one stack: named twice, not known to the store.
        let other_b = Policy::new("b", Quota::per_second(2));
        let err = registry
            .register(&[Policy::new("b", Quota::per_second(1)), other_b.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"b\" is named twice"), "{err}");
        assert!(err.contains("with quota 1/s, then 2/s"), "{err}");
        assert!(!err.contains("registered"), "{err}");
        // Nothing was registered by either.
        let other_a = Policy::new("a", Quota::per_second(5));
        assert!(registry.register(&[other_a]).is_ok());
        assert!(registry.register(&[other_b]).is_ok());
    }

    #[test]
    fn two_registries_never_give_one_id() {
        let (one, other) = (Registry::default(), Registry::default());
        let a = Policy::new("a", Quota::per_second(1));
        let b = Policy::new("b", Quota::per_second(1));
        let ids = [
            one.register(std::slice::from_ref(&a)),
            other.register(&[b]),
            other.register(&[a]),
        ];
        let ids: Vec<u32> = ids.into_iter().map(|ids| ids.unwrap()[0]).collect();
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
    }
}
