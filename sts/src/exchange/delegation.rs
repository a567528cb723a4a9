//! Delegation rules the engine enforces whatever the profile says (design invariant 7,
//! RFC 8693 §4.1 and §4.4):
//! - a subject carrying `may_act` can be exchanged only together with the actor it names;
//! - an accepted actor yields `act`, with the subject's own `act` chain nested inside;
//! - without an actor, the subject's `act` is carried over unchanged — nothing drops it;
//! - an actor token that carries its own `act` (the actor is itself delegated) is refused
//!   unless the profile allows chained actors; then that chain is kept in the actor's entry as
//!   [`ACTOR_CHAIN`], never dropped.

use serde_json::{Map, Value};

use crate::error::OAuthError;
use crate::jose::Claims;

/// The member of the issued `act` object that keeps the actor token's own `act` chain, when a
/// profile accepts chained actors. `act.act` stays the subject's prior chain (RFC 8693 §4.1).
pub const ACTOR_CHAIN: &str = "actor_act";

/// Refuses an actor token that carries its own `act` chain unless the profile allows it.
pub fn check_actor_chain(actor: Option<&Claims>, allowed: bool) -> Result<(), OAuthError> {
    match actor {
        Some(a) if a.contains_key("act") && !allowed => Err(OAuthError::invalid_request(
            "actor_token carries its own act chain, which this exchange profile does not accept",
        )),
        _ => Ok(()),
    }
}

/// Refuses the exchange when the subject's `may_act` does not name the actor.
pub fn check_may_act(subject: &Claims, actor: Option<&Claims>) -> Result<(), OAuthError> {
    let Some(may_act) = subject.get("may_act") else {
        return Ok(());
    };
    let Some(actor) = actor else {
        return Err(OAuthError::invalid_request(
            "subject_token names an authorized actor (may_act): an actor_token is required",
        ));
    };
    let wanted = |name: &str| may_act.get(name).and_then(Value::as_str);
    let has = |name: &str| actor.get(name).and_then(Value::as_str);
    let sub_ok = wanted("sub").is_some_and(|s| has("sub") == Some(s));
    // RFC 8693 §4.4: subjects are unique per issuer, so a `may_act` without `iss` names an
    // actor of the subject token's own issuer.
    let subject_iss = subject.get("iss").and_then(Value::as_str);
    let iss_ok = wanted("iss")
        .or(subject_iss)
        .is_some_and(|i| has("iss") == Some(i));
    if sub_ok && iss_ok {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "actor_token is not the actor the subject_token authorizes (may_act)",
        ))
    }
}

/// The `act` claim of the issued token.
pub fn act_claim(subject: &Claims, actor: Option<&Claims>) -> Option<Value> {
    let prior = subject.get("act").cloned();
    let Some(actor) = actor else {
        return prior;
    };
    let mut act = Map::new();
    for name in ["sub", "iss"] {
        if let Some(v) = actor.get(name) {
            act.insert(name.into(), v.clone());
        }
    }
    // Only reachable when the profile accepted a chained actor (`check_actor_chain`).
    if let Some(chain) = actor.get("act") {
        act.insert(ACTOR_CHAIN.into(), chain.clone());
    }
    if let Some(prior) = prior {
        act.insert("act".into(), prior);
    }
    Some(Value::Object(act))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn nests_prior_chain_and_keeps_it_without_actor() {
        let subject = claims(json!({"sub": "user", "act": {"sub": "svc-a"}}));
        let actor = claims(json!({"sub": "svc-b", "iss": "https://idp"}));
        assert_eq!(
            act_claim(&subject, Some(&actor)).unwrap(),
            json!({"sub": "svc-b", "iss": "https://idp", "act": {"sub": "svc-a"}})
        );
        assert_eq!(act_claim(&subject, None).unwrap(), json!({"sub": "svc-a"}));
        assert_eq!(act_claim(&claims(json!({"sub": "u"})), None), None);
    }

    #[test]
    fn a_chained_actor_is_refused_or_kept_never_dropped() {
        let subject = claims(json!({"sub": "user", "act": {"sub": "svc-a"}}));
        let actor = claims(json!({"sub": "svc-b", "act": {"sub": "svc-c"}}));
        assert!(check_actor_chain(Some(&actor), false).is_err());
        assert!(check_actor_chain(Some(&actor), true).is_ok());
        assert!(check_actor_chain(Some(&claims(json!({"sub": "x"}))), false).is_ok());
        assert!(check_actor_chain(None, false).is_ok());
        assert_eq!(
            act_claim(&subject, Some(&actor)).unwrap(),
            json!({"sub": "svc-b", "actor_act": {"sub": "svc-c"}, "act": {"sub": "svc-a"}})
        );
    }

    #[test]
    fn may_act_binds_the_actor() {
        let subject =
            claims(json!({"sub": "user", "may_act": {"sub": "svc-b", "iss": "https://idp"}}));
        let right = claims(json!({"sub": "svc-b", "iss": "https://idp"}));
        let wrong_iss = claims(json!({"sub": "svc-b", "iss": "https://other"}));
        let wrong_sub = claims(json!({"sub": "svc-c", "iss": "https://idp"}));
        assert!(check_may_act(&subject, Some(&right)).is_ok());
        assert!(check_may_act(&subject, Some(&wrong_iss)).is_err());
        assert!(check_may_act(&subject, Some(&wrong_sub)).is_err());
        assert!(check_may_act(&subject, None).is_err());
        assert!(check_may_act(&claims(json!({"sub": "u"})), None).is_ok());
        // Without `iss`, may_act names an actor of the subject's own issuer.
        let subject =
            claims(json!({"sub": "user", "iss": "https://idp", "may_act": {"sub": "svc-b"}}));
        assert!(check_may_act(&subject, Some(&right)).is_ok());
        assert!(check_may_act(&subject, Some(&wrong_iss)).is_err());
        let no_iss = claims(json!({"sub": "svc-b"}));
        assert!(check_may_act(&subject, Some(&no_iss)).is_err());
    }
}
