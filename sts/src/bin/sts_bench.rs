//! `sts-bench`: prepares a reproducible load test of `POST /token` (see docs/benchmarks.md).
//!
//! `sts-bench prepare --dir D --port P --count N` writes into D: a config for one worker, an
//! identity provider's JWKS, a realistic profile (condition, scope expression, mapping) and
//! mapping, N request bodies each carrying a distinct ES256 subject token, and the wrk Lua script
//! that sends them in order. It is a tool, not part of the service.

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
    },
}

const CLIENT_SECRET: &str = "bench-gateway-secret-0123456789";

fn main() -> Result<(), String> {
    sts::install_crypto_providers();
    let Cmd::Prepare {
        dir,
        port,
        count,
        alg,
    } = Cli::parse().command;
    let alg: Alg = alg.parse().map_err(|()| format!("unsupported alg {alg}"))?;
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
    fs::write(
        dir.join("profiles/bench.yaml"),
        "name: bench\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
         when: \"'orders:read' in subject.scope.split(' ')\"\n\
         issue:\n  kind: access-token\n  audiences: [orders-api]\n  lifetime: 5m\n\
         \x20 scope: \"subject.scope.split(' ').filter(s, s.startsWith('orders:')).join(' ')\"\n\
         \x20 claims: bench-claims\n",
    )
    .map_err(io)?;
    fs::write(
        dir.join("mappings/bench-claims.yaml"),
        "name: bench-claims\nclaims:\n  email: \"has(subject.email) ? subject.email : null\"\n\
         \x20 origin:\n    issuer: subject.iss\n    client: subject.client_id\n",
    )
    .map_err(io)?;

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
