//! A private PostgreSQL that accepts only TLS over TCP, with a server
//! certificate signed by a CA made for it, for tests of `sslmode=verify-full`.
//!
//! [`TlsPostgres::start`] makes, in a fresh temporary directory, a CA and a
//! server certificate for `127.0.0.1` (IP subject alternative name only, so a
//! connection to `localhost` fails verify-full's host name check but passes
//! verify-ca), and another CA that signed nothing; then `initdb` and `pg_ctl`
//! (the PostgreSQL server binaries of the `postgresql` apt package, which
//! `scripts/deps.sh` installs) start a cluster on a free loopback port with
//! `ssl = on` and a `pg_hba.conf` that takes `hostssl` connections only
//! (trust authentication, user `postgres`). Run as root, the server runs as the
//! `postgres` user (initdb refuses root). Nothing is skipped: a missing binary
//! fails the test with what to install. Dropping it stops the server and
//! removes the directory.
//!
//! Starting blocks for a second or two (it runs the commands to their end).

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
};

/// Where the server binaries are looked for when `TEST_PG_BINDIR` is unset.
const PG_LIB: &str = "/usr/lib/postgresql";

pub struct TlsPostgres {
    pub port: u16,
    dir: PathBuf,
    bindir: PathBuf,
    /// Run the server binaries as the `postgres` user (the test runs as root).
    as_postgres: bool,
}

impl TlsPostgres {
    pub fn start() -> Self {
        let bindir = server_bindir();
        require_on_path("openssl");
        let dir = std::env::temp_dir().join(format!("orderflow-tls-pg-{}", crate::unique_tag()));
        std::fs::create_dir(&dir).expect("create the server's directory");
        let as_postgres = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Self { port, dir, bindir, as_postgres };
        server.make_certificates();
        server.init_cluster();
        server.pg_ctl(&["-w", "-t", "30", "-l", &server.path("server.log"), "start"]);
        server
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed nothing this server presents (PEM).
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    /// `postgres://postgres@<host>:<port>/<database>`, then `?query` if any.
    pub fn url(&self, host: &str, database: &str, query: &str) -> String {
        let url = format!("postgres://postgres@{host}:{}/{database}", self.port);
        if query.is_empty() { url } else { format!("{url}?{query}") }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn make_certificates(&self) {
        std::fs::write(self.dir.join("ca.cnf"), CA_CONFIG).unwrap();
        std::fs::write(self.dir.join("server.cnf"), SERVER_CONFIG).unwrap();
        for (ca, subject) in [("ca", "/CN=orderflow test CA"), ("other-ca", "/CN=another test CA")] {
            let (key, crt) = (self.path(&format!("{ca}.key")), self.path(&format!("{ca}.crt")));
            let config = self.path("ca.cnf");
            self.new_key_and(&[
                "-x509", "-config", &config, "-subj", subject, "-days", "2", "-keyout", &key, "-out", &crt,
            ]);
        }
        let (key, csr) = (self.path("server.key"), self.path("server.csr"));
        self.new_key_and(&["-new", "-config", &self.path("server.cnf"), "-keyout", &key, "-out", &csr]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.path("ca.crt"),
            "-CAkey",
            &self.path("ca.key"),
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            &self.path("server.cnf"),
            "-extensions",
            "server",
            "-out",
            &self.path("server.crt"),
        ]);
        // PostgreSQL refuses a key file others may read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn init_cluster(&self) {
        if self.as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres", &self.path("")]), "chown");
        }
        let data = self.path("data");
        self.server_tool("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        let conf = format!(
            "\n# orderflow TLS test server\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n",
            self.port,
            self.path(""),
            self.path("server.crt"),
            self.path("server.key"),
        );
        append(&self.dir.join("data/postgresql.conf"), &conf);
        std::fs::write(self.dir.join("data/pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
            .unwrap();
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.path("data");
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        let out = self.server_command("pg_ctl", &all).output().expect("run pg_ctl");
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pg_ctl {args:?} failed: {said}\nthe server's log:\n{log}");
    }

    fn server_tool(&self, tool: &str, args: &[&str]) {
        run(&mut self.server_command(tool, args), tool);
    }

    /// `bindir/tool args`, as the `postgres` user when the test runs as root.
    fn server_command(&self, tool: &str, args: &[&str]) -> Command {
        let binary = self.bindir.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&binary);
            c
        } else {
            Command::new(&binary)
        };
        command.args(args).current_dir(&self.dir);
        command
    }

    /// `openssl req` with a new P-256 key (quicker to make than RSA).
    fn new_key_and(&self, args: &[&str]) {
        let mut all = vec!["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        all.extend_from_slice(args);
        self.openssl(&all);
    }

    fn openssl(&self, args: &[&str]) {
        run(Command::new("openssl").args(args).current_dir(&self.dir), "openssl");
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.path("data");
        let _ = self.server_command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command` to its end; panics with its output unless it succeeded.
fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn append(file: &Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).expect("postgresql.conf");
    f.write_all(text.as_bytes()).unwrap();
}

/// `TEST_PG_BINDIR`, or the newest `/usr/lib/postgresql/<version>/bin` with
/// `initdb` and `pg_ctl`; fails the test, saying what to install, without one.
fn server_bindir() -> PathBuf {
    let has_tools = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|t| dir.join(t).is_file());
    if let Ok(dir) = std::env::var("TEST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(has_tools(&dir), "TEST_PG_BINDIR={} holds no initdb, pg_ctl and postgres", dir.display());
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_LIB)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) under {PG_LIB}/<version>/bin: \
             scripts/deps.sh installs them (apt package postgresql), or set TEST_PG_BINDIR"
        )
    })
}

fn require_on_path(tool: &str) {
    let found =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    assert!(found, "{tool} is not on PATH: scripts/deps.sh installs it (apt package {tool})");
}

/// A self-signed CA (P-256): what `req -x509` makes with this configuration.
const CA_CONFIG: &str = "\
[req]
prompt = no
distinguished_name = dn
x509_extensions = ca
default_md = sha256
encrypt_key = no
default_keyfile = ca.key
[dn]
CN = orderflow test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";

/// The server's request, and (section `server`) the extensions the CA signs.
const SERVER_CONFIG: &str = "\
[req]
prompt = no
distinguished_name = dn
default_md = sha256
encrypt_key = no
[dn]
CN = 127.0.0.1
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
";
