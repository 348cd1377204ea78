//! A throwaway PostgreSQL server for one test, from Debian's `postgresql` package (`make
//! postgres` installs it): initdb into the test's directory, the server on a free loopback
//! port (and its socket in that directory), one database per service. Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    child: Child,
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

/// The newest installed server's bin directory.
fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|bin| bin.join("postgres").exists());
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("PostgreSQL server not installed: `make postgres` (Debian's postgresql package)")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command for a server binary. PostgreSQL refuses to run as root, so as root it runs as
/// the `postgres` user the package created (setpriv execs: the child is the server itself).
fn server_command(bin: &Path, program: &str) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    /// Starts a server with one database per name in `databases`.
    pub async fn start(databases: &[&str]) -> Postgres {
        let bin = server_bin();
        let dir = crate::test_dir("postgres");
        if running_as_root() {
            run(
                {
                    let mut chown = Command::new("chown");
                    chown.args(["-R", "postgres:postgres"]).arg(&dir);
                    chown
                },
                "chown the test directory",
            );
        }
        let data = dir.join("data");
        let mut initdb = server_command(&bin, "initdb");
        initdb.arg("-D").arg(&data).args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-instructions",
        ]);
        run(initdb, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = server_command(&bin, "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("postgres.log")).expect("postgres log"))
            .spawn()
            .expect("start postgres");
        let server = Postgres {
            child,
            bin,
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(server.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start:\n{}",
                std::fs::read_to_string(server.dir.join("postgres.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for database in databases {
            let mut createdb = Command::new(server.bin.join("createdb"));
            createdb.args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                database,
            ]);
            run(createdb, "createdb");
        }
        server
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one SQL statement with psql; returns its unaligned output.
    pub fn query(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-At", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown (the postmaster takes its backends with it).
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
