//! Our own signing keys: loading and first-start generation in the key directory, the cached
//! pre-parsed key pair that signs every issued token, and the JWKS we publish.
//!
//! A key is parsed once at start; `Signer::sign_jws` only serializes, hashes and signs
//! (jsonwebtoken's `encode` would re-parse the PKCS#8 key on every call, see stack.md). Private
//! key bytes never leave this module and never reach a log. Rotation is not handled here yet:
//! every key found in the directory is published, the newest one of the configured algorithm
//! signs.

mod pem;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use serde_json::{Value, json};

use crate::jose::{Alg, b64_encode, b64_encode_into, b64_len};

/// The algorithms our own keys can sign with (`keys.alg`); the configuration check refuses
/// any other before anything is written to disk.
pub const SIGNING_ALGS: [Alg; 3] = [Alg::ES256, Alg::EdDSA, Alg::RS256];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {0}: not a PKCS#8 P-256, Ed25519 or RSA private key")]
    Unreadable(PathBuf),
    #[error("algorithm {0} cannot be used for our signing keys (use ES256, EdDSA or RS256)")]
    UnsupportedAlg(Alg),
    #[error("could not generate a key")]
    Generate,
    #[error(
        "key file {0}: readable or writable by group or others (mode {1:o}); run `chmod 600` on it"
    )]
    Permissions(PathBuf, u32),
    #[error("signing failed")]
    Sign,
}

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// One of our key pairs with its public JWK and RFC 7638 thumbprint `kid`.
pub struct SigningKey {
    pair: Pair,
    kid: String,
    public_jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 DER key of any supported type.
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let pair = if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            Pair::Es256(k)
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8(der) {
            Pair::EdDsa(k)
        } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            Pair::Rs256(k)
        } else {
            return None;
        };
        let (thumb_input, mut jwk) = public_members(&pair);
        let kid = b64_encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, thumb_input.as_bytes()).as_ref(),
        );
        let alg = alg_of(&pair);
        if let Value::Object(m) = &mut jwk {
            m.insert("kid".into(), Value::String(kid.clone()));
            m.insert("alg".into(), Value::String(alg.as_str().into()));
            m.insert("use".into(), Value::String("sig".into()));
        }
        Some(Self {
            pair,
            kid,
            public_jwk: jwk,
        })
    }

    /// Generates a new PKCS#8 DER key for `alg`.
    pub fn generate_pkcs8(alg: Alg) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        let der = match alg {
            Alg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map(|d| d.as_ref().to_vec()),
            Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng).map(|d| d.as_ref().to_vec()),
            Alg::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map(|d| d.as_ref().to_vec()),
            other => return Err(KeyError::UnsupportedAlg(other)),
        };
        der.map_err(|_| KeyError::Generate)
    }

    pub fn alg(&self) -> Alg {
        alg_of(&self.pair)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Es256(k) => k.sign(rng, message).map(|s| s.as_ref().to_vec()),
            Pair::EdDsa(k) => Ok(k.sign(message).as_ref().to_vec()),
            Pair::Rs256(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, rng, message, &mut sig)
                    .map(|()| sig)
            }
        }
        .map_err(|_| KeyError::Sign)
    }
}

fn alg_of(pair: &Pair) -> Alg {
    match pair {
        Pair::Es256(_) => Alg::ES256,
        Pair::EdDsa(_) => Alg::EdDSA,
        Pair::Rs256(_) => Alg::RS256,
    }
}

/// The RFC 7638 thumbprint input (required members, lexicographic order, no spaces) and the
/// public JWK.
fn public_members(pair: &Pair) -> (String, Value) {
    match pair {
        Pair::Es256(k) => {
            let point = k.public_key().as_ref();
            let (x, y) = (b64_encode(&point[1..33]), b64_encode(&point[33..65]));
            (
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            )
        }
        Pair::EdDsa(k) => {
            let x = b64_encode(k.public_key().as_ref());
            (
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            )
        }
        Pair::Rs256(k) => {
            let p = k.public_key();
            let n = b64_encode(p.modulus().big_endian_without_leading_zero());
            let e = b64_encode(p.exponent().big_endian_without_leading_zero());
            (
                format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
                json!({"kty": "RSA", "n": n, "e": e}),
            )
        }
    }
}

/// Signs every token we issue, and publishes our public keys.
pub struct Signer {
    active: SigningKey,
    /// The start of every protected header, `{"alg":…,"kid":…,"typ":`, built once: the header
    /// is the same for every token of a kind, so a request only appends `typ`.
    header_prefix: Vec<u8>,
    jwks: Value,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Builds a signer around `active`, publishing it and `others`.
    pub fn new(active: SigningKey, others: &[SigningKey]) -> Self {
        let mut keys = vec![active.public_jwk.clone()];
        keys.extend(
            others
                .iter()
                .filter(|k| k.kid != active.kid)
                .map(|k| k.public_jwk.clone()),
        );
        // Members in the order serde_json writes a map (sorted): the bytes are the same as
        // those of `json!({"alg", "kid", "typ"})`, which a test checks.
        let mut header_prefix = br#"{"alg":"#.to_vec();
        push_json_str(&mut header_prefix, active.alg().as_str());
        header_prefix.extend_from_slice(br#","kid":"#);
        push_json_str(&mut header_prefix, &active.kid);
        header_prefix.extend_from_slice(br#","typ":"#);
        Self {
            active,
            header_prefix,
            jwks: json!({ "keys": keys }),
            rng: SystemRandom::new(),
        }
    }

    /// Loads every key in `dir`; when none is of type `alg`, generates one and saves it with
    /// mode 0600. The newest key of type `alg` signs.
    pub fn load_or_generate(dir: &Path, alg: Alg) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_owned(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        let mut found = load_dir(dir)?;
        // Replicas that share the directory and start together must not each generate a key
        // (each would then publish a JWKS without the others' keys): the first takes the lock
        // and generates, the others wait for it and load that key. Only a start that has to
        // generate takes the lock, so a read-only directory that holds its keys needs none.
        let _lock = if found.iter().any(|(k, _)| k.alg() == alg) {
            None
        } else {
            let lock = lock_dir(dir).map_err(io)?;
            found = load_dir(dir)?;
            lock
        };
        if !found.iter().any(|(k, _)| k.alg() == alg) {
            let der = SigningKey::generate_pkcs8(alg)?;
            let key = SigningKey::from_pkcs8(&der).ok_or(KeyError::Generate)?;
            let path = dir.join(format!("{}.pem", key.kid));
            write_private(&path, &pem::encode("PRIVATE KEY", &der)).map_err(|source| {
                KeyError::Io {
                    path: path.clone(),
                    source,
                }
            })?;
            tracing::info!(kid = %key.kid, alg = %alg, path = %path.display(), "generated a new signing key");
            found.push((key, SystemTime::now()));
        }
        found.sort_by_key(|(_, modified)| std::cmp::Reverse(*modified));
        let pos = found
            .iter()
            .position(|(k, _)| k.alg() == alg)
            .ok_or(KeyError::Generate)?;
        let (active, _) = found.remove(pos);
        let others: Vec<SigningKey> = found.into_iter().map(|(k, _)| k).collect();
        Ok(Self::new(active, &others))
    }

    /// The keys `dir` already holds, read-only (`None` when it holds none or does not exist):
    /// for dry runs, which must not create anything.
    pub fn load_existing(dir: &Path) -> Result<Option<Self>, KeyError> {
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut found = load_dir(dir)?;
        found.sort_by_key(|(_, modified)| std::cmp::Reverse(*modified));
        if found.is_empty() {
            return Ok(None);
        }
        let (active, _) = found.remove(0);
        let others: Vec<SigningKey> = found.into_iter().map(|(k, _)| k).collect();
        Ok(Some(Self::new(active, &others)))
    }

    pub fn kid(&self) -> &str {
        &self.active.kid
    }

    pub fn alg(&self) -> Alg {
        self.active.alg()
    }

    /// The JWK Set document we publish.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// Signs `claims` as a compact JWS with header `{alg, kid, typ}`, each part encoded
    /// straight into the token (no intermediate strings).
    pub fn sign_jws(
        &self,
        typ: &str,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<String, KeyError> {
        let mut header = Vec::with_capacity(self.header_prefix.len() + typ.len() + 3);
        header.extend_from_slice(&self.header_prefix);
        push_json_str(&mut header, typ);
        header.push(b'}');
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
        let mut out = String::with_capacity(
            b64_len(header.len()) + b64_len(payload.len()) + b64_len(self.signature_len()) + 2,
        );
        b64_encode_into(&header, &mut out);
        out.push('.');
        b64_encode_into(&payload, &mut out);
        let signature = self.active.sign(&self.rng, out.as_bytes())?;
        out.push('.');
        b64_encode_into(&signature, &mut out);
        Ok(out)
    }

    /// The length of a signature of the active key, in bytes.
    fn signature_len(&self) -> usize {
        match &self.active.pair {
            Pair::Es256(_) => 64,
            Pair::EdDsa(_) => 64,
            Pair::Rs256(k) => k.public_modulus_len(),
        }
    }
}

/// `s` as a JSON string (quoted, escaped exactly as serde_json escapes strings in maps)
/// appended to `out`.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a `&str` into a `Vec` has no error case (no I/O, no map keys to check).
    let written = serde_json::to_writer(&mut *out, s);
    debug_assert!(written.is_ok());
}

fn load_dir(dir: &Path) -> Result<Vec<(SigningKey, SystemTime)>, KeyError> {
    let io = |source| KeyError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut keys = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_none_or(|e| e != "pem") {
            continue;
        }
        let meta = fs::metadata(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        // As ssh does: a private key others can read is refused, not used.
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions(path, mode));
        }
        let text = fs::read_to_string(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        let der =
            pem::decode("PRIVATE KEY", &text).ok_or_else(|| KeyError::Unreadable(path.clone()))?;
        let key = SigningKey::from_pkcs8(&der).ok_or_else(|| KeyError::Unreadable(path.clone()))?;
        let modified = fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        keys.push((key, modified));
    }
    Ok(keys)
}

/// Creates `dir` (and its parents) readable by its owner only (mode 0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// How long a replica waits for another to finish generating a key before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// An exclusive advisory lock on `dir/.lock` (a private file, never read as a key), held until
/// the returned file is dropped. It waits for a replica that holds it (saying so after a
/// second) and fails after [`LOCK_WAIT`]. A filesystem without locks (some network mounts)
/// gets a warning and no lock: starting matters more than the first-start race.
fn lock_dir(dir: &Path) -> std::io::Result<Option<fs::File>> {
    lock_dir_within(dir, LOCK_WAIT)
}

/// [`lock_dir`], giving up after `wait`.
fn lock_dir_within(dir: &Path, wait: std::time::Duration) -> std::io::Result<Option<fs::File>> {
    use std::time::Instant;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(dir.join(".lock"))?;
    let start = Instant::now();
    let mut said = false;
    loop {
        match attempt(file.try_lock()) {
            Attempt::Locked => return Ok(Some(file)),
            Attempt::Held => {}
            Attempt::NoLocks(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "the key directory cannot be locked; replicas that share it and start together may each generate a key");
                return Ok(None);
            }
            Attempt::Failed(e) => return Err(e),
        }
        if start.elapsed() > wait {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "another process has held the key directory's .lock for too long",
            ));
        }
        if !said && start.elapsed() > std::time::Duration::from_secs(1) {
            tracing::info!(dir = %dir.display(), "waiting for another replica to finish generating a key");
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// What one `try_lock` said.
#[derive(Debug)]
enum Attempt {
    Locked,
    /// Another process holds it.
    Held,
    /// The filesystem has no locks.
    NoLocks(std::io::Error),
    Failed(std::io::Error),
}

fn attempt(result: Result<(), fs::TryLockError>) -> Attempt {
    match result {
        Ok(()) => Attempt::Locked,
        Err(fs::TryLockError::WouldBlock) => Attempt::Held,
        Err(fs::TryLockError::Error(e)) if locks_unsupported(&e) => Attempt::NoLocks(e),
        Err(fs::TryLockError::Error(e)) => Attempt::Failed(e),
    }
}

/// `flock` refused by the filesystem itself, not by another holder.
fn locks_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS)
    ) || e.kind() == std::io::ErrorKind::Unsupported
}

/// Writes a private file readable by its owner only (0600), atomically: a temporary file in
/// the same directory is written, synced, then renamed over `path`, so a crash never leaves a
/// truncated key.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut nonce = [0u8; 6];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| std::io::Error::other("no randomness"))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", b64_encode(&nonce)));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

pub use pem::{decode as pem_decode, encode as pem_encode};

#[cfg(test)]
mod tests {
    use super::*;

    /// The header built from the prefix is byte for byte what `json!` gave before (members
    /// sorted, strings escaped), the payload is the claims, and the signature verifies and has
    /// the length the buffer was sized for.
    #[test]
    fn compact_jws_parts_are_exact() {
        use aws_lc_rs::signature::{self, UnparsedPublicKey};
        let claims: serde_json::Map<String, Value> =
            serde_json::from_value(json!({"sub": "alice", "n": 1, "q": "a\"b"})).unwrap();
        for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
            let der = SigningKey::generate_pkcs8(alg).unwrap();
            let signer = Signer::new(SigningKey::from_pkcs8(&der).unwrap(), &[]);
            for typ in ["txntoken+jwt", "odd\"typ\\\u{1}"] {
                let jws = signer.sign_jws(typ, &claims).unwrap();
                let parts: Vec<&str> = jws.split('.').collect();
                assert_eq!(parts.len(), 3);
                let decode = |p: &str| crate::jose::b64_decode(p).unwrap();
                // serde_json writes map members sorted (its `preserve_order` is off): if a
                // dependency ever turns that on, this fails on purpose, since the prefix order
                // would then differ from what `json!` gives.
                let expected = json!({"alg": alg.as_str(), "typ": typ, "kid": signer.kid()});
                assert_eq!(decode(parts[0]), serde_json::to_vec(&expected).unwrap());
                assert_eq!(decode(parts[1]), serde_json::to_vec(&claims).unwrap());
                let sig = decode(parts[2]);
                assert_eq!(sig.len(), signer.signature_len(), "{alg:?}");
                let (public, verify_alg): (Vec<u8>, &dyn signature::VerificationAlgorithm) =
                    match &signer.active.pair {
                        Pair::Es256(k) => (
                            k.public_key().as_ref().to_vec(),
                            &signature::ECDSA_P256_SHA256_FIXED,
                        ),
                        Pair::EdDsa(k) => (k.public_key().as_ref().to_vec(), &signature::ED25519),
                        Pair::Rs256(k) => (
                            k.public_key().as_ref().to_vec(),
                            &signature::RSA_PKCS1_2048_8192_SHA256,
                        ),
                    };
                let signed = &jws[..jws.rfind('.').unwrap()];
                UnparsedPublicKey::new(verify_alg, public)
                    .verify(signed.as_bytes(), &sig)
                    .unwrap();
            }
        }
    }

    #[test]
    fn base64url_lengths_are_exact() {
        for n in 0..200 {
            assert_eq!(b64_len(n), b64_encode(&vec![0u8; n]).len(), "{n}");
        }
    }

    #[test]
    fn key_files_are_private_and_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("a/keys");
        let signer = Signer::load_or_generate(&keys, Alg::ES256).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys), 0o700);
        // The lock file is private too, and is never read as a key.
        assert_eq!(mode(&keys.join(".lock")), 0o600);
        let files: Vec<_> = fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with(".lock"))
            .collect();
        assert_eq!(files.len(), 1, "no temporary file is left: {files:?}");
        assert_eq!(mode(&files[0]), 0o600);
        assert!(files[0].ends_with(format!("{}.pem", signer.kid())));
        fs::set_permissions(&files[0], fs::Permissions::from_mode(0o640)).unwrap();
        let err = Signer::load_or_generate(&keys, Alg::ES256)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("readable or writable by group or others (mode 640)"),
            "{err}"
        );
        fs::set_permissions(&files[0], fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Signer::load_or_generate(&keys, Alg::ES256).unwrap().kid(),
            signer.kid()
        );
    }

    #[test]
    fn keys_persist_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load_or_generate(dir.path(), Alg::ES256).unwrap();
        let b = Signer::load_or_generate(dir.path(), Alg::ES256).unwrap();
        assert_eq!(a.kid(), b.kid(), "a restart keeps the key");
        let ed = Signer::load_or_generate(dir.path(), Alg::EdDSA).unwrap();
        assert_eq!(ed.jwks()["keys"].as_array().unwrap().len(), 2);
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "x".into());
        let jws = ed.sign_jws("at+jwt", &claims).unwrap();
        assert_eq!(jws.split('.').count(), 3);
        let mode = fs::metadata(dir.path().join(format!("{}.pem", a.kid()))).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
    }

    /// A filesystem without locks gets a warning and no lock; contention and real failures
    /// are not mistaken for that.
    #[test]
    fn lock_errors_are_classified() {
        use std::io::{Error, ErrorKind};
        for errno in [libc::ENOLCK, libc::EOPNOTSUPP, libc::ENOSYS] {
            assert!(
                locks_unsupported(&Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        assert!(locks_unsupported(&Error::from(ErrorKind::Unsupported)));
        for errno in [libc::EWOULDBLOCK, libc::EIO, libc::EBADF, libc::EACCES] {
            assert!(
                !locks_unsupported(&Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    /// Each `try_lock` answer leads where it should: a filesystem without locks to no lock, any
    /// other error to a failed start, another holder to waiting.
    #[test]
    fn lock_attempts_are_told_apart() {
        use std::io::Error;
        assert!(matches!(attempt(Ok(())), Attempt::Locked));
        assert!(matches!(
            attempt(Err(fs::TryLockError::WouldBlock)),
            Attempt::Held
        ));
        let no_locks = Error::from_raw_os_error(libc::ENOLCK);
        assert!(matches!(
            attempt(Err(fs::TryLockError::Error(no_locks))),
            Attempt::NoLocks(_)
        ));
        let io = Error::from_raw_os_error(libc::EIO);
        assert!(matches!(
            attempt(Err(fs::TryLockError::Error(io))),
            Attempt::Failed(_)
        ));
    }

    /// A lock another process holds is waited for, then given up with a clear error.
    #[test]
    fn a_held_lock_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path()).unwrap().expect("locks work here");
        let start = std::time::Instant::now();
        let e = lock_dir_within(dir.path(), std::time::Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= std::time::Duration::from_millis(200));
        drop(held);
        assert!(
            lock_dir(dir.path()).unwrap().is_some(),
            "free again once dropped"
        );
    }

    /// A start that finds its key takes no lock, so a key directory it cannot write (a
    /// mounted secret) still starts.
    #[test]
    fn a_directory_with_its_key_is_used_without_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let kid = Signer::load_or_generate(&keys, Alg::ES256)
            .unwrap()
            .kid()
            .to_owned();
        fs::remove_file(keys.join(".lock")).unwrap();
        // A directory in place of the lock file: opening it for writing would fail.
        fs::create_dir(keys.join(".lock")).unwrap();
        assert_eq!(
            Signer::load_or_generate(&keys, Alg::ES256).unwrap().kid(),
            kid
        );
        assert!(
            Signer::load_or_generate(&keys, Alg::EdDSA).is_err(),
            "a key to generate needs the lock"
        );
    }

    /// Replicas sharing an empty key directory and starting at once end with one key between
    /// them (RSA generation is slow enough that, without the lock, each would make its own).
    #[test]
    fn replicas_starting_together_share_one_generated_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let kids: Vec<String> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let signer = Signer::load_or_generate(&path, Alg::RS256).unwrap();
                        (
                            signer.kid().to_owned(),
                            signer.jwks()["keys"].as_array().unwrap().len(),
                        )
                    })
                })
                .collect();
            starts
                .into_iter()
                .map(|t| {
                    let (kid, published) = t.join().unwrap();
                    assert_eq!(published, 1, "one key published");
                    kid
                })
                .collect()
        });
        assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
        let pems = std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "pem")
            })
            .count();
        assert_eq!(pems, 1);
    }
}
