//! TLS for tests: a certificate authority the test makes itself (with Debian's `openssl`), and
//! servers of the test's own that speak TLS with its certificates — a `redis-server` on a TLS
//! port, a private Postgres cluster (`initdb` + `pg_ctl`, with `ssl = on`) and a private MariaDB
//! (`mariadb-install-db` + `mariadbd`, TLS required). Everything lives in a temporary directory
//! and stops when its handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `openssl <args>` in `dir`, failing the test with openssl's words if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A certificate authority and what it signed: a server certificate for `localhost` and
/// `127.0.0.1`, and a client certificate whose common name is `client`.
#[derive(Debug)]
pub struct TestCa {
    pub dir: PathBuf,
}

impl TestCa {
    /// Makes a CA named `name` in `dir` (created), with its server and client certificates.
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ca = Self { dir: dir.to_owned() };
        let subject = format!("/CN=ranq test CA {name}");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        ca.sign("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth");
        ca.sign("client", "/CN=client", "extendedKeyUsage=clientAuth");
        ca
    }

    /// A key and a certificate `<name>.key`, `<name>.pem` for `subject`, signed by this CA.
    fn sign(&self, name: &str, subject: &str, extension: &str) {
        let (key, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        std::fs::write(self.dir.join(&ext), format!("{extension}\n")).unwrap();
        openssl(&self.dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port} within 20 s");
        assert!(matches!(child.try_wait(), Ok(None)), "{what} exited at start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `redis-server` that speaks only TLS, with the CA's server certificate.
#[derive(Debug)]
pub struct TlsRedis {
    pub port: u16,
    child: Child,
}

impl TlsRedis {
    /// `clients_must_prove`: whether clients must show a certificate of the CA (mutual TLS).
    pub fn start(ca: &TestCa, clients_must_prove: bool) -> Self {
        let port = crate::free_port();
        let path = |p: PathBuf| p.display().to_string();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-cert-file", &path(ca.cert("server")), "--tls-key-file", &path(ca.key("server"))])
            .args(["--tls-ca-cert-file", &path(ca.ca())])
            .args(["--tls-auth-clients", if clients_must_prove { "yes" } else { "no" }])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test installs it)");
        wait_for_port(port, &mut child, "redis-server --tls-port");
        Self { port, child }
    }

    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of a Postgres installation's programs (`initdb`, `pg_ctl`), newest first.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres is installed (scripts/test installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().expect("a Postgres version with initdb under /usr/lib/postgresql")
}

/// Runs a Postgres program as the `postgres` user when the test runs as root (initdb refuses
/// root), as the current user otherwise.
fn as_postgres(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A private Postgres cluster with `ssl = on` and the CA's server certificate. It trusts every
/// login over TLS from loopback, and plaintext logins too unless `tls_only`; the user
/// `certuser` must show a client certificate of the CA whose common name is `client` (mapped).
#[derive(Debug)]
pub struct TlsPostgres {
    pub port: u16,
    dir: PathBuf,
}

impl TlsPostgres {
    pub fn start(ca: &TestCa, dir: &Path) -> Self {
        let bin = postgres_bin();
        let data = dir.join("pgdata");
        std::fs::create_dir_all(dir).unwrap();
        // The server runs as postgres and must read its directory and its key (0600, its own).
        let owner = |path: &Path| {
            if nix::unistd::geteuid().is_root() {
                let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().unwrap();
                assert!(status.success(), "chown {}", path.display());
            }
        };
        for name in ["server.pem", "server.key", "ca.pem"] {
            std::fs::copy(ca.dir.join(name), dir.join(name)).unwrap();
        }
        std::fs::set_permissions(dir.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        owner(dir);
        let out = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = crate::free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\nssl = on\n\
             ssl_cert_file = '{dir}/server.pem'\nssl_key_file = '{dir}/server.key'\nssl_ca_file = '{dir}/ca.pem'\n\
             fsync = off\n",
            dir = dir.display()
        );
        let mut postgresql_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        postgresql_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), postgresql_conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all certuser 127.0.0.1/32 cert map=ranq\n\
             hostssl all all 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        std::fs::write(data.join("pg_ident.conf"), "ranq client certuser\n").unwrap();
        owner(dir);
        let log = dir.join("postgres.log");
        let out = as_postgres(&bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-l"])
            .arg(&log)
            .args(["-w", "-t", "30", "start"])
            .output()
            .unwrap();
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(out.status.success(), "pg_ctl start: {}{logged}", String::from_utf8_lossy(&out.stderr));
        let server = Self { port, dir: dir.to_owned() };
        let status = as_postgres(&bin.join("psql"))
            .args(["-h"])
            .arg(dir)
            .args(["-p", &port.to_string(), "-U", "postgres", "-qc", "CREATE USER certuser SUPERUSER"])
            .status()
            .unwrap();
        assert!(status.success(), "creating certuser");
        server
    }

    /// `postgres://<user>@localhost:<port>/postgres?<params>`.
    pub fn url(&self, user: &str, params: &str) -> String {
        format!("postgres://{user}@localhost:{}/postgres?{params}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&postgres_bin().join("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.join("pgdata"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private MariaDB server that accepts TLS connections only (`require_secure_transport`), with
/// the CA's server certificate. `root` logs in without a password; the user `certuser` must also
/// show a client certificate signed by the CA (`REQUIRE X509`).
#[derive(Debug)]
pub struct TlsMariaDb {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl TlsMariaDb {
    pub fn start(ca: &TestCa, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        for name in ["server.pem", "server.key", "ca.pem"] {
            std::fs::copy(ca.dir.join(name), dir.join(name)).unwrap();
        }
        // mariadbd refuses to run as root: it runs as mysql, which must own its directory.
        let root = nix::unistd::geteuid().is_root();
        if root {
            let status = Command::new("chown").args(["-R", "mysql:mysql"]).arg(dir).status().unwrap();
            assert!(status.success(), "chown {}", dir.display());
        }
        let data = dir.join("data");
        let user: &[&str] = if root { &["--user=mysql"] } else { &[] };
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(user)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .expect("mariadb-install-db runs (scripts/test installs mariadb-server)");
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        let port = crate::free_port();
        let file = |name: &str| dir.join(name).display().to_string();
        let mut child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(user)
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-log-bin", "--innodb-buffer-pool-size=16M"])
            .arg(format!("--socket={}", file("sock")))
            .arg(format!("--pid-file={}", file("pid")))
            .arg(format!("--ssl-cert={}", file("server.pem")))
            .arg(format!("--ssl-key={}", file("server.key")))
            .arg(format!("--ssl-ca={}", file("ca.pem")))
            .arg("--require-secure-transport=ON")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("mariadbd.log")).unwrap())
            .spawn()
            .expect("mariadbd starts");
        wait_for_port(port, &mut child, "mariadbd");
        Self { port, dir: dir.to_owned(), child }
    }

    /// `mysql://<user>@localhost:<port>/<database>?<params>`.
    pub fn url(&self, user: &str, database: &str, params: &str) -> String {
        format!("mysql://{user}@localhost:{}/{database}?{params}", self.port)
    }

    /// Runs `statement` as root over TLS verified against `ca`.
    pub async fn admin(&self, ca: &TestCa, statement: &str) {
        let url = self.url("root", "mysql", &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.ca().display()));
        let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
        sqlx::raw_sql(statement).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

impl Drop for TlsMariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
