//! The fuzz targets' seeds and every crash the fuzzers found, replayed through the same entry
//! points (`sts::fuzzing`) on every test run: `sts/fuzz/seeds/<target>/` and
//! `sts/fuzz/regressions/<target>/`.
//!
//! The seeds come from the tests' own fixtures. `STS_WRITE_FUZZ_SEEDS=1 cargo test fuzz_seeds`
//! writes them anew (the repository's profiles, mappings and default configuration, the
//! harness's tokens, forms and configuration).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::json;

use crate::support::*;

type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 4] = [
    ("jws", sts::fuzzing::jws),
    ("form", sts::fuzzing::form),
    ("profiles", sts::fuzzing::profiles),
    ("config", sts::fuzzing::config),
];

fn fuzz_dir() -> PathBuf {
    repo_root().join("sts/fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn seeds_and_past_crashes_run_clean() {
    if std::env::var("STS_WRITE_FUZZ_SEEDS").is_ok_and(|v| v == "1") {
        write_seeds();
    }
    for (name, run) in TARGETS {
        let seeds = files_in(&fuzz_dir().join("seeds").join(name));
        assert!(seeds.len() >= 3, "{name}: seeds are committed");
        let crashes = files_in(&fuzz_dir().join("regressions").join(name));
        for file in seeds.iter().chain(&crashes) {
            // A panic here names the file through the test's failure output.
            let data = std::fs::read(file).unwrap();
            eprintln!("{name}: {}", file.display());
            run(&data);
        }
    }
}

fn write_seeds() {
    let root = repo_root();
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    // jws: tokens of every algorithm the harness signs with, and the malformed shapes the
    // negative suite sends.
    let es = Idp::new("https://idp.test", "es", "ES256");
    let rs = Idp::new("https://idp.test", "rs", "RS256");
    let ed = Idp::new("https://idp.test", "ed", "EdDSA");
    put("jws", "es256", es.access_token(json!({})).as_bytes());
    put("jws", "rs256", rs.access_token(json!({})).as_bytes());
    put(
        "jws",
        "eddsa",
        ed.access_token(json!({"act": {"sub": "a"}})).as_bytes(),
    );
    put(
        "jws",
        "duplicate-member",
        es.sign_raw(r#"{"alg":"ES256","alg":"none"}"#, r#"{"sub":"a"}"#)
            .as_bytes(),
    );
    put("jws", "jwe-shape", b"eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d");
    put(
        "jws",
        "json-nested",
        br#"{"a":[1,{"b":[true,null,"\u00e9"]}],"n":1e308}"#,
    );
    // form: an Authorization line, then a body.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("gateway:{GATEWAY_SECRET}"));
    let exchange = Form::exchange(&es.access_token(json!({})))
        .set("audience", "orders-api")
        .set("scope", "orders:read")
        .body();
    put(
        "form",
        "exchange",
        format!("Basic {basic}\n{exchange}").as_bytes(),
    );
    put(
        "form",
        "actor-and-resource",
        format!(
            "Basic {basic}\n{exchange}&actor_token=a.b.c&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&resource=https%3A%2F%2Fa.test%2F&resource=https%3A%2F%2Fb.test%2F"
        )
        .as_bytes(),
    );
    put(
        "form",
        "malformed",
        b"Basic %%%\ngrant_type=x&grant_type=y&a=%FF&b=%2&=c&&subject_token=",
    );
    // profiles: the repository's examples and the harness's, profile NUL mapping.
    let mut n = 0;
    let mappings: Vec<String> = files_in(&root.join("mappings"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for (i, p) in files_in(&root.join("profiles")).iter().enumerate() {
        let profile = std::fs::read_to_string(p).unwrap();
        let mapping = mappings
            .get(i % mappings.len().max(1))
            .cloned()
            .unwrap_or_default();
        put(
            "profiles",
            &format!("example-{n}"),
            format!("{profile}\0{mapping}").as_bytes(),
        );
        n += 1;
    }
    for (_, profile) in TEST_PROFILES {
        put(
            "profiles",
            &format!("harness-{n}"),
            format!("{profile}\0{}", TEST_MAPPINGS[0].1).as_bytes(),
        );
        n += 1;
    }
    // config: the embedded default and the harness's configuration.
    put("config", "default", sts::config::DEFAULT_YAML.as_bytes());
    put(
        "config",
        "harness",
        harness_config(
            Path::new("/tmp/sts-fuzz"),
            "client_auth: {failures_per_peer: 5}",
        )
        .as_bytes(),
    );
    put(
        "config",
        "introspection",
        b"issuer: https://sts.test\nlisten: 127.0.0.1:0\nkeys: {dir: k}\nprofiles: p\nmappings: m\ntrust:\n  - {name: i, kind: oauth-introspection, issuer: \"https://as.test\", endpoint: \"https://as.test/introspect\", client_id: c, client_secret_file: /nonexistent}\n",
    );
}
