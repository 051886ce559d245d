//! The embedded PostgreSQL cluster against the machine's real binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_infrastructure::embedded::{EmbeddedError, EmbeddedOptions, EmbeddedPostgres};
use berth_infrastructure::migrations;
use tempfile::TempDir;

/// A directory under /tmp the `postgres` user can enter when the tests run as root.
fn scratch() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("berth-embedded-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn options(dir: &Path) -> EmbeddedOptions {
    EmbeddedOptions {
        fsync: false,
        own_process_group: false,
        ..EmbeddedOptions::new(dir.join("berth"))
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

async fn count_notes(pg: &EmbeddedPostgres) -> i64 {
    let client = pg.database().connect().await.unwrap();
    client
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn data_and_migrations_survive_a_restart() {
    let dir = scratch();
    let pg = EmbeddedPostgres::start(options(dir.path())).await.unwrap();
    // Two migrators at once (two replicas starting): the lock makes one do the work.
    let db = pg.database();
    let (a, b) = tokio::join!(migrations::run(&db), migrations::run(&db));
    let mut applied = [a.unwrap(), b.unwrap()];
    applied.sort();
    assert_eq!(applied, [0, migrations::embedded_versions().len()]);
    let client = pg.database().connect().await.unwrap();
    let (db, user): (String, String) = {
        let row = client
            .query_one("SELECT current_database(), current_user", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(db, "berth");
    assert_eq!(user, pg.os_user());
    client
        .batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept');")
        .await
        .unwrap();
    drop(client);
    let cluster = pg.cluster_dir().to_owned();
    let log = pg.log_file().to_owned();
    pg.stop().await.unwrap();

    assert!(
        cluster.join("data/PG_VERSION").exists(),
        "stop removed the cluster"
    );
    assert!(log.exists(), "stop removed the server log");

    let pg = EmbeddedPostgres::start(options(dir.path())).await.unwrap();
    assert_eq!(count_notes(&pg).await, 1);
    assert_eq!(migrations::run(&pg.database()).await.unwrap(), 0);
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn a_second_start_while_running_is_refused() {
    let dir = scratch();
    let first = EmbeddedPostgres::start(options(dir.path())).await.unwrap();
    let err = EmbeddedPostgres::start(options(dir.path()))
        .await
        .expect_err("two processes must not drive one cluster");
    assert!(matches!(err, EmbeddedError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("in use by another Berth process"));
    // The refused start must not have disturbed the running cluster.
    first.database().connect().await.unwrap();
    first.stop().await.unwrap();
}

#[tokio::test]
async fn recovers_after_the_server_was_killed() {
    let dir = scratch();
    // Durable settings: without them a killed server may lose its last commits.
    let durable = || EmbeddedOptions {
        fsync: true,
        ..options(dir.path())
    };
    let pg = EmbeddedPostgres::start(durable()).await.unwrap();
    let client = pg.database().connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept');")
        .await
        .unwrap();
    drop(client);
    let pidfile = pg.cluster_dir().join("data/postmaster.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Stopping a server that is already dead is not an error.
    pg.stop().await.unwrap();
    assert!(pidfile.exists(), "a crash leaves postmaster.pid behind");

    // The killed server's children notice and exit on their own; until they have,
    // PostgreSQL refuses to reuse the shared memory.
    let mut attempts = 0;
    let pg = loop {
        match EmbeddedPostgres::start(durable()).await {
            Ok(pg) => break pg,
            Err(e) if attempts < 10 => {
                attempts += 1;
                eprintln!("start after crash, attempt {attempts}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("no recovery after a crash: {e}"),
        }
    };
    assert_eq!(count_notes(&pg).await, 1);
    pg.stop().await.unwrap();
}

/// Where `pg_ctl` is, as the launcher finds it.
fn pg_ctl() -> PathBuf {
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("pg_ctl"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .flatten()
            .map(|e| e.path().join("bin/pg_ctl"))
            .filter(|p| p.exists())
            .collect();
        dirs.sort();
        dirs.pop().expect("pg_ctl")
    })
}

/// Runs `pg_ctl` as the cluster's owner, as an operator or a dead Berth would have.
fn run_pg_ctl(cluster: &Path, args: &[&str]) {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let meta = std::fs::metadata(cluster).unwrap();
    let mut cmd = Command::new(pg_ctl());
    cmd.args(args)
        .arg("-D")
        .arg(cluster.join("data"))
        .arg("-l")
        .arg(cluster.join("postgres.log"))
        .current_dir(cluster);
    if is_root() {
        cmd.uid(meta.uid()).gid(meta.gid());
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "pg_ctl {args:?}: {status}");
}

/// Stops, when dropped, a server started behind the launcher's back.
struct StrayServer(PathBuf);

impl Drop for StrayServer {
    fn drop(&mut self) {
        let mut cmd = Command::new(pg_ctl());
        cmd.args(["stop", "-m", "immediate", "-D"])
            .arg(self.0.join("data"));
        if is_root() {
            use std::os::unix::fs::MetadataExt;
            use std::os::unix::process::CommandExt;
            let meta = std::fs::metadata(&self.0).unwrap();
            cmd.uid(meta.uid()).gid(meta.gid());
        }
        let _ = cmd.output();
    }
}

#[tokio::test]
async fn a_cluster_left_running_is_restarted_and_reused() {
    let dir = scratch();
    let pg = EmbeddedPostgres::start(options(dir.path())).await.unwrap();
    let cluster = pg.cluster_dir().to_owned();
    pg.database()
        .connect()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept');")
        .await
        .unwrap();
    pg.stop().await.unwrap();

    run_pg_ctl(&cluster, &["start", "-w", "-s"]);
    let _stray = StrayServer(cluster.clone());

    let pg = EmbeddedPostgres::start(options(dir.path())).await.unwrap();
    assert_eq!(count_notes(&pg).await, 1);
    pg.stop().await.unwrap();
}

/// Kills, when dropped, a process standing in for an unrelated one.
struct Bystander(std::process::Child);

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_stale_pid_file_naming_an_unrelated_process_is_ignored() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let dir = scratch();
    let pg = EmbeddedPostgres::start(options(dir.path())).await.unwrap();
    let cluster = pg.cluster_dir().to_owned();
    pg.stop().await.unwrap();

    // After a reboot the old postmaster's pid can belong to anything of the same user.
    let owner = std::fs::metadata(&cluster).unwrap();
    let mut sleeper = Command::new("sleep");
    sleeper.arg("60");
    if is_root() {
        sleeper.uid(owner.uid()).gid(owner.gid());
    }
    let mut bystander = Bystander(sleeper.spawn().unwrap());
    let pidfile = cluster.join("data/postmaster.pid");
    std::fs::write(
        &pidfile,
        format!("{}\n{}\n", bystander.0.id(), cluster.join("data").display()),
    )
    .unwrap();
    if is_root() {
        std::os::unix::fs::chown(&pidfile, Some(owner.uid()), Some(owner.gid())).unwrap();
    }

    let pg = EmbeddedPostgres::start(options(dir.path())).await.unwrap();
    pg.database().connect().await.unwrap();
    assert!(
        bystander.0.try_wait().unwrap().is_none(),
        "the unrelated process was signalled"
    );
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn missing_binaries_say_what_to_install() {
    let dir = scratch();
    let empty = dir.path().join("no-binaries");
    std::fs::create_dir(&empty).unwrap();
    let err = EmbeddedPostgres::start(EmbeddedOptions {
        bin_dir: Some(empty),
        ..options(dir.path())
    })
    .await
    .expect_err("no binaries there");
    assert!(
        matches!(err, EmbeddedError::BinariesNotFound { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("install the PostgreSQL server"),
        "{message}"
    );
    assert!(message.contains("DATABASE_URL"), "{message}");
}

#[tokio::test]
async fn a_data_dir_the_postgres_user_cannot_reach_is_named() {
    if !is_root() {
        eprintln!("skipped: only root hands the cluster to another user");
        return;
    }
    let dir = scratch();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = EmbeddedPostgres::start(options(&private))
        .await
        .expect_err("postgres cannot enter a 0700 root directory");
    match &err {
        EmbeddedError::NotTraversable { dir, user, .. } => {
            assert_eq!(dir, &private);
            assert_eq!(user, "postgres");
        }
        other => panic!("expected NotTraversable, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&private.display().to_string()),
        "{message}"
    );
    assert!(message.contains("chmod o+x"), "{message}");
}

#[tokio::test]
async fn a_socket_path_over_the_limit_is_refused() {
    let dir = scratch();
    let deep = dir.path().join("d".repeat(100));
    let err = EmbeddedPostgres::start(options(&deep))
        .await
        .expect_err("socket path too long");
    assert!(
        matches!(err, EmbeddedError::SocketPathTooLong { .. }),
        "{err}"
    );
}
