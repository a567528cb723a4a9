//! Profile and mapping loading: every problem reported together with file and line; the
//! repository's example files load.

use crate::support::*;

fn load(profiles: &[(&str, &str)], mappings: &[(&str, &str)]) -> Result<usize, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    write_files(&dir.path().join("p"), profiles);
    write_files(&dir.path().join("m"), mappings);
    std::fs::write(
        dir.path().join("idp.json"),
        Idp::new("https://idp.test", "k", "ES256")
            .jwks()
            .to_string(),
    )
    .unwrap();
    let config = harness_config(dir.path(), "");
    let settings = sts::config::Settings::from_yaml(&config).unwrap();
    let http = sts::trust::HttpFetcher::new(std::time::Duration::from_secs(1)).unwrap();
    let kinds = sts::token::KindRegistry::builtin();
    let env = sts::token::KindEnv {
        our_issuer: &settings.issuer,
        trust_domain: "example.com",
        own_keys: &sts::trust::OwnKeys::empty(),
        http: &http,
    };
    let trust = sts::trust::TrustRegistry::build(&settings.trust, &kinds, &env).unwrap();
    sts::profile::load(
        &dir.path().join("p"),
        &dir.path().join("m"),
        &trust,
        &kinds,
        "example.com",
    )
    .map(|c| c.profiles.len())
    .map_err(|e| e.0.iter().map(|p| p.to_string()).collect())
}

const GOOD: &str = "name: good\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m}\n";

#[test]
fn the_test_profiles_load() {
    assert_eq!(load(TEST_PROFILES, TEST_MAPPINGS), Ok(4));
}

#[test]
fn all_problems_are_reported_together_with_file_and_line() {
    let profiles = [
        (
            "a.yaml",
            "name: a\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nbogus: 1\nissue: {kind: access-token, audiences: [x], lifetime: 1m}\n",
        ),
        (
            "b.yaml",
            "name: b\ncallers: [gateway]\nsubject:\n  accept: [nope]\nwhen: \"subject.sub ==\"\nissue: {kind: access-tokn, audiences: [y], lifetime: 99h, claims: missing}\n",
        ),
        (
            "c.yaml",
            "name: c\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nwhen: \"subject.sub + 1\"\nissue: {kind: access-token, audiences: [z], lifetime: 1m, scope: \"42\"}\n",
        ),
    ];
    let mappings = [
        (
            "m.yaml",
            "name: m\nclaims:\n  iss: \"'x'\"\n  n: \"1 + 'a'\"\n",
        ),
        ("dup.yaml", "name: d\nname: d2\nclaims: {}\n"),
    ];
    let errs = load(&profiles, &mappings).unwrap_err();
    let all = errs.join("\n");
    for want in [
        "a.yaml:4:1: `bogus` is not a known key here; known keys: name, description, callers, \
         subject, actor, when, issue",
        "b.yaml:4:12: unknown trust entry `nope`",
        "b.yaml:5:7: when: CEL does not compile",
        "b.yaml:6:15: unknown kind `access-tokn`",
        "issue.lifetime must be between 1s and 24h",
        "unknown mapping `missing`",
        "c.yaml:4:7: when fails",
        "c.yaml:5:66: issue.scope must be a string",
        "m.yaml:3:8: claim `iss` is reserved",
        "mapping `m` fails at",
        "dup.yaml:2:1: `name` is written twice in the same mapping",
    ] {
        assert!(all.contains(want), "missing `{want}` in:\n{all}");
    }
}

#[test]
fn reserved_claims_per_kind_and_overlaps() {
    let mappings = [(
        "m.yaml",
        "name: m\nclaims:\n  scope: \"'all'\"\n  act: \"{'sub': 'x'}\"\n",
    )];
    let p = [(
        "p.yaml",
        "name: p\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m, claims: m}\n",
    )];
    let all = load(&p, &mappings).unwrap_err().join("\n");
    assert!(all.contains("claim `act` is reserved"), "{all}");
    let mappings = [("m.yaml", "name: m\nclaims:\n  client_id: \"'x'\"\n")];
    let all = load(&p, &mappings).unwrap_err().join("\n");
    assert!(
        all.contains("writes `client_id`, which kind access-token reserves"),
        "{all}"
    );

    let overlap = [
        ("1.yaml", GOOD),
        (
            "2.yaml",
            "name: other\ncallers: [\"spiffe://example.com/*\", gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [w, x], lifetime: 1m}\n",
        ),
    ];
    let all = load(&overlap, &[]).unwrap_err();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].ends_with(
            "/p/2.yaml:1:7: profile `other` overlaps profile `good` (at {dir}/p/1.yaml:1:7): \
             both match caller `gateway` asking for `x`"
                .replace("{dir}", all[0].split("/p/2.yaml").next().unwrap())
                .as_str()
        ),
        "{all:?}"
    );
    // The same name twice: one duplicate, at both positions, and no overlap with itself.
    let twice = [("1.yaml", GOOD), ("2.yaml", &format!("# again\n{GOOD}"))];
    let all = load(&twice, &[]).unwrap_err();
    assert_eq!(all.len(), 1, "{all:?}");
    let dir = all[0].split("/p/2.yaml").next().unwrap();
    assert_eq!(
        all[0],
        format!("{dir}/p/2.yaml:2:7: profile `good` is also defined at {dir}/p/1.yaml:1:7")
    );
    let m = "name: m\nclaims:\n  team: \"'x'\"\n";
    let all = load(&[("1.yaml", GOOD)], &[("a.yaml", m), ("b.yaml", m)]).unwrap_err();
    assert_eq!(
        all,
        vec![format!(
            "{dir}/m/b.yaml:1:7: mapping `m` is also defined at {dir}/m/a.yaml:1:7"
        )]
        .into_iter()
        .map(|s| s.replace(dir, all[0].split("/m/b.yaml").next().unwrap()))
        .collect::<Vec<_>>()
    );
    let disjoint = [
        ("1.yaml", GOOD),
        ("2.yaml", &GOOD.replace("good", "g2").replace("[x]", "[y]")),
    ];
    assert_eq!(load(&disjoint, &[]), Ok(2));
}

#[test]
fn caller_patterns_and_actor_settings_are_checked() {
    let p = [
        (
            "p.yaml",
            "name: p\ncallers: [\"spiffe://example.com/gate*\"]\nsubject: {accept: [corp-idp]}\nactor: {mode: forbidden, accept: [mesh-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m}\n",
        ),
        (
            "q.yaml",
            "name: q\ncallers: []\nsubject: {accept: [corp-idp]}\nactor: {mode: required}\nissue: {kind: access-token, audiences: [], lifetime: 1m}\n",
        ),
    ];
    let all = load(&p, &[]).unwrap_err().join("\n");
    for want in [
        "whole last segment",
        "actor.accept is set but actor.mode is forbidden",
        "must name their trust entries",
        "at least one caller",
        "at least one non-empty target",
    ] {
        assert!(all.contains(want), "missing `{want}` in:\n{all}");
    }
}

#[test]
fn yaml_budgets_refuse_alias_bombs() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let errs = load(&[("bomb.yaml", bomb)], &[]).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn the_repository_examples_load_in_development_mode() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    let yaml = sts::config::DEFAULT_YAML
        .replace(
            "dir: .sts/keys",
            &format!("dir: {}/keys", dir.path().display()),
        )
        .replace(
            "profiles: profiles",
            &format!("profiles: {}/profiles", root.display()),
        )
        .replace(
            "mappings: mappings",
            &format!("mappings: {}/mappings", root.display()),
        );
    let mut settings =
        sts::config::Settings::from_yaml(&format!("{yaml}dev_dir: {}/dev\n", dir.path().display()))
            .unwrap();
    sts::dev::prepare(&mut settings).unwrap();
    let http = sts::trust::HttpFetcher::new(std::time::Duration::from_secs(1)).unwrap();
    let kinds = sts::token::KindRegistry::builtin();
    let (_, _, catalog) =
        sts::app::Snapshot::policy(&settings, &kinds, &http, &sts::trust::OwnKeys::empty())
            .unwrap();
    assert_eq!(
        catalog.profiles.len(),
        std::fs::read_dir(root.join("profiles")).unwrap().count()
    );
}

#[test]
fn profiles_for_different_input_kinds_do_not_overlap() {
    let id = "name: by-id\ncallers: [gateway]\nsubject: {accept: [corp-oidc]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m}\n";
    let at = "name: by-at\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m}\n";
    let legacy = "name: by-legacy\ncallers: [gateway]\nsubject: {accept: [legacy-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m}\n";
    assert_eq!(load(&[("id.yaml", id), ("at.yaml", at)], &[]), Ok(2));
    // Two access-token kinds for the same caller and target do overlap.
    let errs = load(&[("at.yaml", at), ("legacy.yaml", legacy)], &[]).unwrap_err();
    assert!(
        errs.join("\n").contains("overlaps profile `by-at`"),
        "{errs:?}"
    );
}

#[test]
fn shape_problems_name_the_key_in_plain_words() {
    let a = "name: x\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nactor: {mode: sometimes}\nissue: {kind: access-token, audiences: [a], lifetime: 1m}\n";
    let b = "- name: y\n";
    let c = "name: z\ncallers: gateway\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [a], lifetime: 1m}\n";
    let errs = load(&[("a.yaml", a), ("b.yaml", b), ("c.yaml", c)], &[]).unwrap_err();
    let dir = errs[0].split("/p/a.yaml").next().unwrap().to_owned();
    let errs: Vec<String> = errs.iter().map(|e| e.replace(&dir, "")).collect();
    assert_eq!(
        errs,
        vec![
            "/p/a.yaml:4:15: actor.mode: `sometimes` is not allowed here; use one of: forbidden, optional, required",
            "/p/b.yaml:1:1: expected a mapping (key: value pairs) here",
            "/p/c.yaml:2:10: callers: expected a list here",
        ]
    );
}
