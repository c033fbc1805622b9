//! TLS both ways (issue 24), with a CA the test makes (openssl):
//!
//! - to PostgreSQL: a throw-away cluster of the test's own serving TLS on its own port.
//!   `sslmode=verify-full` with that CA connects, over TLS; with another CA the start
//!   fails at once, saying why;
//! - to the upstream services over `https`: a TLS server in front of the simulators.
//!   With `UPSTREAM_CA_FILE` naming the CA, orders go through; with another CA, or the
//!   system's alone, every call fails on the certificate. Nothing falls back to plain text.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Connection;

use crate::crash::free_port;
use crate::helpers::wait_until;

/// A PostgreSQL cluster in a temporary directory, serving TLS on 127.0.0.1.
struct TlsPostgres {
    server: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // A fast shutdown, then the directory goes.
        if let Some(pid) = rustix::process::Pid::from_raw(self.server.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.server.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PostgreSQL's binaries (Debian's layout; the newest version installed).
fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    versions.sort_unstable();
    let version = versions.last().expect("a PostgreSQL version");
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin/{name}"))
}

/// Runs a command (as PostgreSQL's user when `as_postgres` and we are root), or panics.
fn run(cmd: &mut Command, as_postgres: bool) {
    if as_postgres && rustix::process::getuid().is_root() {
        // PostgreSQL will not run as root.
        cmd.uid(postgres_id("-u")).gid(postgres_id("-g"));
    }
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn postgres_id(which: &str) -> u32 {
    let out = Command::new("id")
        .args([which, "postgres"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Makes a CA (`{name}.crt`, `{name}.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    run(
        Command::new("openssl")
            .current_dir(dir)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
            ])
            .args(["-subj", &format!("/CN={name}")]),
        false,
    );
}

/// A CA of the test (`test-ca`), another one (`other-ca`), and a server certificate for
/// 127.0.0.1 and localhost signed by the first (`server.crt`, `server.key`), in `dir`.
fn make_certs(dir: &Path) {
    let dir = dir.to_owned();
    make_ca(&dir, "test-ca");
    make_ca(&dir, "other-ca");
    // The server's certificate, for 127.0.0.1 and localhost, signed by the test CA.
    run(
        Command::new("openssl")
            .current_dir(&dir)
            .args(["req", "-newkey", "rsa:2048", "-nodes"])
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", "/CN=localhost"]),
        false,
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(
        Command::new("openssl")
            .current_dir(&dir)
            .args(["x509", "-req", "-in", "server.csr", "-days", "2"])
            .args([
                "-CA",
                "test-ca.crt",
                "-CAkey",
                "test-ca.key",
                "-CAcreateserial",
            ])
            .args(["-out", "server.crt", "-extfile", "server.ext"]),
        false,
    );
}

impl TlsPostgres {
    async fn start() -> TlsPostgres {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("ft-tlspg-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_certs(&dir);
        if rustix::process::getuid().is_root() {
            run(
                Command::new("chown").args(["-R", "postgres", &dir.display().to_string()]),
                false,
            );
        }
        run(
            Command::new("chmod").args(["600", &dir.join("server.key").display().to_string()]),
            false,
        );
        let data = dir.join("data");
        run(
            Command::new(pg_bin("initdb"))
                .args(["-D", &data.display().to_string()])
                .args(["-U", "postgres", "--auth=trust", "--no-sync"]),
            true,
        );
        let mut server = Command::new(pg_bin("postgres"));
        server
            .args(["-D", &data.display().to_string()])
            .args(["-p", &port.to_string(), "-k", &dir.display().to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "ssl=on",
                "-c",
                "fsync=off",
            ])
            .args([
                "-c",
                &format!("ssl_cert_file={}", dir.join("server.crt").display()),
            ])
            .args([
                "-c",
                &format!("ssl_key_file={}", dir.join("server.key").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if rustix::process::getuid().is_root() {
            server.uid(postgres_id("-u")).gid(postgres_id("-g"));
        }
        let server = server.spawn().expect("postgres starts");
        let pg = TlsPostgres { server, port, dir };
        let url = pg.url("test-ca", "verify-full");
        let up = wait_until(Duration::from_secs(20), || async {
            sqlx::PgConnection::connect(&url).await.is_ok()
        })
        .await;
        assert!(up, "the TLS PostgreSQL came up on {port}");
        pg
    }

    fn url(&self, ca: &str, mode: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={}",
            self.port,
            self.dir.join(format!("{ca}.crt")).display()
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_against_the_configured_ca() {
    let pg = TlsPostgres::start().await;
    // The right CA: the store starts (migrations included), over TLS.
    let url = pg.url("test-ca", "verify-full");
    let store = fulfillment::store::SqlStore::connect(&url, 2).await;
    assert!(store.is_ok(), "{:#}", store.err().unwrap());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (tls,): (bool,) =
        sqlx::query_as("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(tls, "the connection is encrypted");
    // Another CA: refused, and the error says it is the certificate.
    let wrong = fulfillment::store::SqlStore::connect(&pg.url("other-ca", "verify-full"), 2).await;
    let message = format!(
        "{:#}",
        wrong
            .err()
            .expect("a server the CA did not sign is refused")
    );
    assert!(
        message.contains("certificate was not accepted") && message.contains("sslrootcert"),
        "the error names the certificate: {message}"
    );
}

/// A TLS server on 127.0.0.1 (the test CA's `server.crt`) passing every connection on to
/// `to` in plain text: the simulators behind `https`.
async fn tls_front(dir: &Path, to: String) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, to) = (acceptor.clone(), to.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_over_https_are_trusted_by_the_configured_ca_only() {
    use fulfillment::ports::Hosting;
    let dir = std::env::temp_dir().join(format!("ft-tls-up-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveOnDrop(dir.clone());
    make_certs(&dir);
    let mut app = crate::helpers::TestApp::prepare(
        crate::helpers::Backend::Sqlite,
        Default::default(),
        |_| {},
    )
    .await;
    let plain = app.sims.url.trim_start_matches("http://").to_owned();
    let front = format!("https://127.0.0.1:{}", tls_front(&dir, plain).await);
    let url: reqwest::Url = front.parse().unwrap();
    app.config.upstreams.hosting_url = Some(url.clone());
    app.config.upstreams.subscription_url = Some(url.clone());
    app.config.upstreams.otun_url = Some(url.clone());
    app.config.upstreams.ca_file = Some(dir.join("test-ca.crt"));
    app.start().await;
    // An order goes through every upstream over https.
    app.sims.subscribe("tls-1", "sub-tls-1", "premium");
    let (status, body) = app.provision("tls-1", "sub-tls-1").await;
    assert_eq!(status, 202, "{body}");
    let id = body["resource_id"].as_str().unwrap();
    app.wait_status(id, "active").await;
    app.wait_callbacks("sub-tls-1", 1).await;
    // Another CA, or the system's alone: every call fails, on the certificate.
    let timeout = std::time::Duration::from_secs(5);
    let other = fulfillment::upstream::ca_bundle(&dir.join("other-ca.crt")).unwrap();
    for (what, http) in [
        (
            "another CA",
            fulfillment::upstream::http_client_trusting(timeout, other),
        ),
        (
            "the system's CAs",
            fulfillment::upstream::http_client(timeout),
        ),
    ] {
        let client = fulfillment::upstream::HostingClient::new(http, url.clone(), "k".into());
        let refused = client.list_nodes().await.expect_err(what).to_string();
        assert!(refused.contains("certificate"), "{what}: {refused}");
    }
    // A CA file that is missing or holds no certificate fails the start, naming it.
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
    for bad in ["missing.pem", "empty.pem"] {
        let mut config = app.config.clone();
        config.upstreams.ca_file = Some(dir.join(bad));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = fulfillment::server::start(&config, listener, None).await;
        let message = format!("{:#}", refused.err().expect(bad));
        assert!(message.contains("UPSTREAM_CA_FILE"), "{bad}: {message}");
    }
}

/// A directory removed when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
