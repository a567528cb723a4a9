//! Claim mappings: output claim → CEL expression (nested objects allowed), applied to one
//! request's variables. Pure: no I/O, no clock, no policy beyond computing values.
//!
//! A claim whose expression yields `null` is left out. Reserved claims are refused at load by
//! `profile/`; the minter also writes them last, so a mapping can never set them.

use serde_json::{Map, Value};

use crate::expr::{Expr, Variables, cel_to_json, is_missing_key};

/// One node of a mapping: an expression, or an object of further nodes.
#[derive(Debug)]
pub enum ClaimRule {
    Expr(Expr),
    Object(Vec<(String, ClaimRule)>),
}

/// A compiled mapping file.
#[derive(Debug)]
pub struct Mapping {
    pub name: String,
    pub claims: Vec<(String, ClaimRule)>,
}

/// Why a mapping could not be applied to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingError {
    /// The input lacks a claim the mapping reads: the subject is unacceptable for this profile.
    MissingClaim { at: String },
    /// Any other evaluation failure: a configuration problem.
    Failed { at: String, why: String },
}

impl Mapping {
    /// Computes the mapped claims.
    pub fn apply(&self, vars: &Variables) -> Result<Map<String, Value>, MappingError> {
        apply_rules(&self.claims, vars)
    }

    /// Top-level claim names this mapping writes.
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.claims.iter().map(|(k, _)| k.as_str())
    }
}

fn apply_rules(
    rules: &[(String, ClaimRule)],
    vars: &Variables,
) -> Result<Map<String, Value>, MappingError> {
    let mut out = Map::new();
    for (name, rule) in rules {
        let value = match rule {
            ClaimRule::Expr(e) => eval_claim(e, vars)?,
            ClaimRule::Object(children) => Value::Object(apply_rules(children, vars)?),
        };
        if !value.is_null() {
            out.insert(name.clone(), value);
        }
    }
    Ok(out)
}

/// A claim's value: a plain member selection is copied from the JSON it names (the same value
/// CEL would give, without converting to CEL and back); anything else is evaluated.
fn eval_claim(e: &Expr, vars: &Variables) -> Result<Value, MappingError> {
    if let Some(v) = e.select_json(vars) {
        return Ok(v.clone());
    }
    let v = e.eval(vars).map_err(|err| {
        if is_missing_key(&err) {
            MappingError::MissingClaim {
                at: e.loc.to_string(),
            }
        } else {
            MappingError::Failed {
                at: e.loc.to_string(),
                why: err.to_string(),
            }
        }
    })?;
    cel_to_json(&v).map_err(|why| MappingError::Failed {
        at: e.loc.to_string(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::SourceLoc;
    use serde_json::json;

    fn rule(source: &str) -> ClaimRule {
        let loc = SourceLoc {
            file: "m.yaml".into(),
            line: 3,
            column: 5,
        };
        ClaimRule::Expr(Expr::compile(source, loc).unwrap())
    }

    /// Copied selections behave as evaluated ones: a null leaves the claim out, a missing
    /// claim refuses the subject and names where the mapping reads it.
    #[test]
    fn copied_selections_keep_the_mapping_rules() {
        let subject = json!({"sub": "alice", "nothing": null, "o": {"k": [1]}});
        let Value::Object(claims) = &subject else {
            unreachable!()
        };
        let (caller, request) = (json!({"id": "gw"}), json!({"request_details": {"a": 1}}));
        let vars = Variables::from_claims(claims, None, &caller, &request, 1);
        let mapping = Mapping {
            name: "m".into(),
            claims: vec![
                ("sub".into(), rule("subject.sub")),
                ("gone".into(), rule("subject.nothing")),
                (
                    "nested".into(),
                    ClaimRule::Object(vec![
                        ("k".into(), rule("subject.o.k")),
                        ("tctx".into(), rule("request.request_details")),
                    ]),
                ),
            ],
        };
        assert_eq!(
            Value::Object(mapping.apply(&vars).unwrap()),
            json!({"sub": "alice", "nested": {"k": [1], "tctx": {"a": 1}}})
        );
        let missing = Mapping {
            name: "m".into(),
            claims: vec![("email".into(), rule("subject.email"))],
        };
        assert_eq!(
            missing.apply(&vars),
            Err(MappingError::MissingClaim {
                at: "m.yaml:3:5".into()
            })
        );
    }
}
