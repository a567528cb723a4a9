//! A real nginx (the Debian package, on loopback) in front of an upstream that records what it
//! receives, with the `sts` binary as its `auth_request` service — configured with the nginx
//! configuration printed in docs/ingress.md. The upstream gets a Txn-Token and never the access
//! token; a bad, forged or expired access token never reaches it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use serde_json::Value;

use crate::end_to_end::{dev_token, free_port, get_json, start};
use crate::support::*;

/// One request's headers as the upstream saw them (lower-case name, value).
type Headers = Vec<(String, String)>;
/// What the upstream saw: every request's headers.
type Seen = Arc<Mutex<Vec<Headers>>>;

async fn record(req: HttpRequest, seen: web::Data<Mutex<Vec<Headers>>>) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    seen.lock().unwrap().push(headers);
    HttpResponse::Ok().body("upstream ok")
}

fn start_upstream() -> (String, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = web::Data::new(Mutex::new(Vec::new()));
    let shared = seen.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .default_service(web::to(record))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (addr, seen.into_inner())
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful shutdown of master and workers.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The nginx configuration of docs/ingress.md, with our addresses and credential.
fn documented_config(sts: &str, upstream: &str, listen: &str, basic: &str) -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/ingress.md")).unwrap();
    let start = doc
        .find("```nginx\n")
        .expect("docs/ingress.md has an nginx block")
        + 9;
    let end = start + doc[start..].find("```").unwrap();
    let config = &doc[start..end];
    for documented in [
        "127.0.0.1:8080",
        "127.0.0.1:9000",
        "127.0.0.1:8000",
        "ZWRnZS1nYXRld2F5OkNIQU5HRS1NRQ==",
    ] {
        assert!(
            config.contains(documented),
            "{documented} in the documented config"
        );
    }
    config
        .replace("127.0.0.1:8080", sts)
        .replace("127.0.0.1:9000", upstream)
        .replace("127.0.0.1:8000", listen)
        .replace("ZWRnZS1nYXRld2F5OkNIQU5HRS1NRQ==", basic)
}

fn start_nginx(dir: &Path, config: &str, listen: &str) -> Nginx {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    std::fs::write(prefix.join("nginx.conf"), config).unwrap();
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is installed (tests/run.sh installs it)");
    let pid = prefix.join("nginx.pid");
    let child = Command::new(bin)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("logs/error.log"))
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-g")
        .arg(format!("daemon off; pid {};", pid.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(prefix.join("logs/stderr.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let nginx = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(listen).is_ok() {
            return nginx;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
    panic!("nginx did not start: {log}");
}

#[actix_web::test]
async fn nginx_forwards_a_txn_token_and_never_the_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let server = start(d, port, "gw").await;
    let (upstream, seen) = start_upstream();
    let listen = format!("127.0.0.1:{}", free_port());
    let secret = std::fs::read_to_string(d.join("dev/client-secret")).unwrap();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("dev-client:{}", secret.trim()));
    let config = documented_config(&format!("127.0.0.1:{port}"), &upstream, &listen, &basic);
    let _nginx = start_nginx(d, &config, &listen);
    let http = reqwest::Client::new();
    let front = format!("http://{listen}");
    let jwks: Value = get_json(&http, &format!("{}/jwks", server.base)).await;

    // A good token: the upstream gets a Txn-Token, not the access token.
    let user = dev_token(d, port, "gw-cli1", &["--sub", "alice"]);
    let r = http
        .get(format!("{front}/orders/7?x=1"))
        .bearer_auth(&user)
        .header("Txn-Token", "forged-by-the-client")
        .header("X-Real-IP", "203.0.113.66")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "upstream ok");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let headers = &got[0];
    let txn: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "txn-token")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(txn.len(), 1, "exactly one Txn-Token: {headers:?}");
    assert!(!headers.iter().any(|(n, _)| n == "authorization"));
    assert!(
        !headers.iter().any(|(_, v)| v.contains(&user)),
        "the access token never reaches the upstream"
    );
    let c = decode_issued(txn[0], &jwks, &server.base, Some("example.com"), true);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["scope"], "orders:read");
    assert_eq!(c["req_wl"], "dev-client");
    assert_eq!(
        c["rctx"]["req_ip"], "127.0.0.1",
        "set by nginx, not the client"
    );
    assert_eq!(c["tctx"]["method"], "GET");
    assert_eq!(c["tctx"]["path"], "/orders/7?x=1");

    // Refused tokens never reach the upstream.
    let expired = dev_token(d, port, "gw-cli2", &["--lifetime", "1s"]);
    let no_scope = dev_token(d, port, "gw-cli3", &["--scope", "profile"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let forged =
        Idp::new("https://dev-idp.sts.invalid", "dev", "ES256").access_token(serde_json::json!({}));
    for (token, status) in [
        (Some("not-a-token"), 401),
        (Some(forged.as_str()), 401),
        (Some(expired.as_str()), 401),
        (None, 401),
        (Some(no_scope.as_str()), 403),
    ] {
        let mut req = http.get(format!("{front}/orders/8"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{token:?}");
        if status == 401 {
            let challenge = r
                .headers()
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap();
            assert!(challenge.starts_with("Bearer realm=\"sts\""), "{challenge}");
        }
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "nothing refused reached the upstream"
    );

    // The same user token again (cached verification) still gets a new transaction.
    for _ in 0..2 {
        let r = http
            .get(format!("{front}/orders/9"))
            .bearer_auth(&user)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let got = seen.lock().unwrap().clone();
    let txns: Vec<String> = got[1..]
        .iter()
        .map(|h| {
            let t = &h.iter().find(|(n, _)| n == "txn-token").unwrap().1;
            decode_issued(t, &jwks, &server.base, Some("example.com"), true)["txn"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_ne!(txns[0], txns[1]);
    // Nothing the processes printed holds a token or the secret.
    drop(server);
    let used = [
        user.as_str(),
        expired.as_str(),
        forged.as_str(),
        secret.trim(),
        basic.as_str(),
    ];
    for f in std::fs::read_dir(d).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|e| e == "err" || e == "out") {
            let text = std::fs::read_to_string(&path).unwrap();
            for u in used {
                assert!(!text.contains(u), "{} prints a credential", path.display());
            }
        }
    }
}
