//! `sts-bench`: prepares a reproducible load test of `POST /token` and measures the crypto floor
//! it is compared with (see docs/benchmarks.md).
//!
//! `sts-bench prepare --dir D --port P --count N` writes into D: a config for one worker, an
//! identity provider's JWKS, a profile (by default a realistic one with a condition, a scope
//! expression and a mapping; `--profile plain` for audience and lifetime only), N request bodies
//! each carrying a distinct ES256 subject token, and the wrk Lua script that sends them in order.
//!
//! `sts-bench floor` times raw aws-lc-rs ES256 verify and sign on the current core, so a load
//! test run on this noisy VM can be set against the floor measured minutes apart.
//! It is a tool, not part of the service.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand};
use sts::auth::SecretHash;
use sts::jose::Alg;
use sts::keys::{Signer, SigningKey};

#[derive(Parser)]
#[command(
    name = "sts-bench",
    about = "Prepare a load test of the sts token endpoint"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write config, profile, mapping, request bodies and the wrk script into --dir.
    Prepare {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 18080)]
        port: u16,
        /// How many distinct subject tokens (one per request).
        #[arg(long, default_value_t = 250_000)]
        count: usize,
        /// Signing algorithm of the issued tokens (ES256, EdDSA, RS256).
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// `mapped`: CEL condition, scope expression and claim mapping; `plain`: none of them.
        #[arg(long, default_value = "mapped")]
        profile: String,
    },
    /// Time raw ES256 verify and sign (aws-lc-rs, pre-parsed keys) for --seconds; print the
    /// floor in exchanges/s (one verify plus one sign each).
    Floor {
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

const CLIENT_SECRET: &str = "bench-gateway-secret-0123456789";

fn main() -> Result<(), String> {
    sts::install_crypto_providers();
    match Cli::parse().command {
        Cmd::Prepare {
            dir,
            port,
            count,
            alg,
            profile,
        } => prepare(dir, port, count, &alg, &profile),
        Cmd::Floor { seconds } => floor(seconds),
    }
}

/// The two bench profiles: `mapped` (realistic: condition, scope expression, claim mapping)
/// and `plain` (audience and lifetime only).
const MAPPED_PROFILE: &str = "name: bench\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
     when: \"'orders:read' in subject.scope.split(' ')\"\n\
     issue:\n  kind: access-token\n  audiences: [orders-api]\n  lifetime: 5m\n\
     \x20 scope: \"subject.scope.split(' ').filter(s, s.startsWith('orders:')).join(' ')\"\n\
     \x20 claims: bench-claims\n";
const MAPPED_CLAIMS: &str = "name: bench-claims\nclaims:\n  email: \"has(subject.email) ? subject.email : null\"\n\
     \x20 origin:\n    issuer: subject.iss\n    client: subject.client_id\n";
const PLAIN_PROFILE: &str = "name: bench\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
     issue:\n  kind: access-token\n  audiences: [orders-api]\n  lifetime: 5m\n";

fn floor(seconds: f64) -> Result<(), String> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        ParsedPublicKey,
    };
    use std::time::{Duration, Instant};
    let rng = SystemRandom::new();
    let der = SigningKey::generate_pkcs8(Alg::ES256).map_err(|e| e.to_string())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|e| e.to_string())?;
    let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
        .map_err(|e| e.to_string())?;
    // About the size of a JWS signing input of a subject token.
    let message = vec![b'e'; 600];
    let signature = pair.sign(&rng, &message).map_err(|e| e.to_string())?;
    let budget = Duration::from_secs_f64(seconds / 2.0);
    let time = |op: &mut dyn FnMut() -> bool| -> Result<f64, String> {
        let (start, mut n) = (Instant::now(), 0u32);
        while start.elapsed() < budget {
            if !op() {
                return Err("crypto operation failed".into());
            }
            n += 1;
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(n))
    };
    let verify_us = time(&mut || public.verify_sig(&message, signature.as_ref()).is_ok())?;
    let sign_us = time(&mut || pair.sign(&rng, &message).is_ok())?;
    println!(
        "floor: ES256 verify {verify_us:.1} µs + sign {sign_us:.1} µs = {:.0} exchanges/s",
        1e6 / (verify_us + sign_us)
    );
    Ok(())
}

fn prepare(dir: PathBuf, port: u16, count: usize, alg: &str, profile: &str) -> Result<(), String> {
    let alg: Alg = alg.parse().map_err(|()| format!("unsupported alg {alg}"))?;
    let (profile_yaml, mapping_yaml) = match profile {
        "mapped" => (MAPPED_PROFILE, Some(MAPPED_CLAIMS)),
        "plain" => (PLAIN_PROFILE, None),
        other => return Err(format!("unknown profile {other} (mapped or plain)")),
    };
    let io = |e: std::io::Error| e.to_string();
    fs::create_dir_all(dir.join("profiles")).map_err(io)?;
    fs::create_dir_all(dir.join("mappings")).map_err(io)?;
    let dir = fs::canonicalize(&dir).map_err(io)?;
    let d = dir.display();
    let issuer = format!("http://127.0.0.1:{port}");

    let idp_der = SigningKey::generate_pkcs8(Alg::ES256).map_err(|e| e.to_string())?;
    let idp_key = SigningKey::from_pkcs8(&idp_der).ok_or("key")?;
    let jwks = serde_json::json!({"keys": [idp_key.public_jwk()]});
    fs::write(dir.join("idp-jwks.json"), jwks.to_string()).map_err(io)?;
    let idp = Signer::new(idp_key, &[]);

    let hash = SecretHash::create(CLIENT_SECRET, 10_000)?;
    fs::write(
        dir.join("sts.yaml"),
        format!(
            "issuer: {issuer}\nlisten: 127.0.0.1:{port}\nworkers: 1\nkeys: {{dir: {d}/keys, alg: {alg}}}\n\
             profiles: {d}/profiles\nmappings: {d}/mappings\ntrust:\n  - {{name: corp-idp, kind: oauth-jwt, \
             issuer: \"https://idp.bench\", algorithms: [ES256], jwks: {{file: {d}/idp-jwks.json}}}}\n\
             clients:\n  - {{id: gateway, secret_hash: \"{hash}\"}}\n"
        ),
    )
    .map_err(io)?;
    fs::write(dir.join("profiles/bench.yaml"), profile_yaml).map_err(io)?;
    let claims_file = dir.join("mappings/bench-claims.yaml");
    match mapping_yaml {
        Some(m) => fs::write(&claims_file, m).map_err(io)?,
        None if claims_file.exists() => fs::remove_file(&claims_file).map_err(io)?,
        None => {}
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let mut bodies = BufWriter::new(fs::File::create(dir.join("bodies.txt")).map_err(io)?);
    for i in 0..count {
        let claims = serde_json::json!({
            "iss": "https://idp.bench", "sub": format!("user-{i}"), "aud": issuer,
            "client_id": "web-app", "scope": "orders:read orders:write profile",
            "email": format!("user-{i}@example.com"), "iat": now, "exp": now + 3600,
            "jti": format!("bench-{i}"),
        });
        let serde_json::Value::Object(claims) = claims else {
            unreachable!()
        };
        let token = idp.sign_jws("at+jwt", &claims).map_err(|e| e.to_string())?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("subject_token", &token)
            .append_pair(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            )
            .append_pair("audience", "orders-api")
            .finish();
        writeln!(bodies, "{body}").map_err(io)?;
    }
    bodies.flush().map_err(io)?;

    let auth = STANDARD.encode(format!("gateway:{CLIENT_SECRET}"));
    fs::write(
        dir.join("load.lua"),
        format!(
            "-- Sends each pre-generated body once, in order (distinct subject token per request).\n\
             local bodies = {{}}\n\
             for line in io.lines(\"{d}/bodies.txt\") do bodies[#bodies + 1] = line end\n\
             local i = 0\n\
             wrapped = 0\n\
             wrk.method = \"POST\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"Basic {auth}\"\n\
             request = function()\n\
             \x20 i = i + 1\n\
             \x20 if i > #bodies then i = 1; wrapped = wrapped + 1 end\n\
             \x20 return wrk.format(nil, \"/token\", nil, bodies[i])\n\
             end\n"
        ),
    )
    .map_err(io)?;
    println!("prepared {count} requests in {d}");
    Ok(())
}
