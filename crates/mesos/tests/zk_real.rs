//! `spate_mesos::zk` against a real ZooKeeper server (Debian's, started here as cluster.sh
//! does), with masters simulated the way Mesos registers them: ephemeral sequential
//! `json.info_` znodes holding MasterInfo JSON, one session per master.
//!
//! Skipped with a notice when ZooKeeper or java is not installed, unless
//! `SPATE_REQUIRE_MESOS=1` (CI with the Mesos install) makes that a failure.

use spate_mesos::zk::{self, ZkError, ZkUrl};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zookeeper_client as zkc;

const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

fn java_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("java").is_file()))
}

/// False (after a notice) when the test cannot run here.
fn zookeeper_installed() -> bool {
    if Path::new(ZK_JAR).is_file() && java_on_path() {
        return true;
    }
    if std::env::var("SPATE_REQUIRE_MESOS").as_deref() == Ok("1") {
        panic!("ZooKeeper not installed ({ZK_JAR} and java needed) but SPATE_REQUIRE_MESOS=1");
    }
    // Straight to stderr: the harness would swallow eprintln! of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "zk_real skipped: ZooKeeper not installed; run ../shared/mesos/install.sh --zk"
    );
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A standalone ZooKeeper server; killed (and its files removed) on drop, also when the
/// test fails.
struct ZkServer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl ZkServer {
    fn start() -> ZkServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("spate-zk-test-{}-{}", std::process::id(), port));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("zk temp dir");
        let mut server = ZkServer {
            child: None,
            dir,
            port,
        };
        std::fs::write(
            server.dir.join("zoo.cfg"),
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=ruok,stat\n",
                server.dir.join("data").display()
            ),
        )
        .expect("zoo.cfg");
        server.launch();
        server
    }

    /// Start (or restart, same port and data) the server and wait for `ruok` → `imok`.
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zk.log"))
            .expect("zk.log");
        let child = Command::new("java")
            .arg("-cp")
            .arg(format!("{ZK_JAR}:/usr/share/java/*"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("zk.log"))
            .stderr(log)
            .spawn()
            .expect("start java");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.ruok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("ZooKeeper exited with {status}:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "ZooKeeper did not answer ruok in 60 s:\n{}",
            self.log_tail()
        );
    }

    fn ruok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut answer).is_ok() && answer == "imok"
    }

    /// Client connections the server has open (its `stat` lists them), not counting the
    /// one asking.
    fn client_connections(&self) -> usize {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return 0;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = String::new();
        if s.write_all(b"stat").is_err() || s.read_to_string(&mut answer).is_err() {
            return 0;
        }
        let listed = answer.lines().filter(|l| l.starts_with(" /")).count();
        listed.saturating_sub(1)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("zk.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("ZooKeeper log tail:\n{}", self.log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// MasterInfo as a Mesos 1.x master writes it.
fn master_info(id: &str, port: u16) -> Vec<u8> {
    format!(
        r#"{{"address":{{"hostname":"localhost","ip":"127.0.0.1","port":{port}}},"hostname":"localhost","id":"{id}","ip":16777343,"pid":"master@127.0.0.1:{port}","port":{port},"version":"1.12.0"}}"#
    )
    .into_bytes()
}

/// A master's registration: its own session and its ephemeral sequential znode.
async fn register_master(zk_addr: &str, path: &str, id: &str, port: u16) -> (zkc::Client, String) {
    let client = zkc::Client::connector()
        .with_session_timeout(Duration::from_secs(2))
        .connect(zk_addr)
        .await
        .expect("master session");
    let opts = zkc::CreateMode::EphemeralSequential.with_acls(zkc::Acls::anyone_all());
    let (_, seq) = client
        .create(&format!("{path}/json.info_"), &master_info(id, port), &opts)
        .await
        .expect("create json.info_ znode");
    (client, format!("{path}/json.info_{seq}"))
}

async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

/// Wait until the watch reports `want` (intermediate values may pass).
async fn until_leader(w: &mut zk::LeaderWatch, want: Option<&str>, limit: Duration) {
    let what = format!("leader {want:?}");
    within(&what, limit, async {
        while w.current_leader().as_deref() != want {
            w.wait_change().await.expect("watch alive");
        }
    })
    .await
}

#[test]
fn leader_follows_real_zookeeper() {
    if !zookeeper_installed() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut server = ZkServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(scenario(&mut server));
}

async fn scenario(server: &mut ZkServer) {
    let zk_addr = server.addr();
    let admin = zkc::Client::connect(&zk_addr).await.expect("admin session");
    let persistent = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    admin
        .create("/mesos", b"", &persistent)
        .await
        .expect("create /mesos");
    // Children a framework must ignore: the replicated log's, and a protobuf `info_` node
    // whose sequence number is lower than every master's.
    admin
        .create("/mesos/log_replicas", b"", &persistent)
        .await
        .expect("create log_replicas");
    admin
        .create(
            "/mesos/info_",
            b"\x08\x01",
            &zkc::CreateMode::PersistentSequential.with_acls(zkc::Acls::anyone_all()),
        )
        .await
        .expect("create info_");

    // Nothing registered yet: a clear timeout error naming the path and the server.
    let url = ZkUrl::parse(&format!("zk://{zk_addr}/mesos")).expect("url");
    let err = zk::watch_leader_within(&url, Duration::from_secs(2), Duration::from_secs(2))
        .await
        .expect_err("no master registered yet");
    assert!(matches!(err, ZkError::NoLeader { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "no Mesos master is registered under /mesos in ZooKeeper at {zk_addr}"
        )),
        "{err}"
    );
    // A path that does not exist says so.
    let missing = ZkUrl::parse(&format!("zk://{zk_addr}/nowhere")).expect("url");
    let err = zk::watch_leader_within(&missing, Duration::from_secs(2), Duration::from_secs(2))
        .await
        .expect_err("no such path");
    assert!(err.to_string().contains("/nowhere does not exist"), "{err}");
    // Those failed watches closed their sessions: only the admin's connection is left.
    within("watch sessions closed", Duration::from_secs(10), async {
        while tokio::task::block_in_place(|| server.client_connections()) != 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    let (first, first_node) = register_master(&zk_addr, "/mesos", "m1", 5051).await;
    let (_second, second_node) = register_master(&zk_addr, "/mesos", "m2", 5052).await;
    assert!(first_node < second_node, "{first_node} {second_node}");

    // A second listed server that is down must not matter.
    let dead = free_port();
    let url = ZkUrl::parse(&format!("zk://127.0.0.1:{dead},{zk_addr}/mesos")).expect("url");
    let mut w = within(
        "watch_leader",
        Duration::from_secs(15),
        zk::watch_leader(&url, Duration::from_secs(2)),
    )
    .await
    .expect("first leader");
    assert_eq!(w.current_leader().as_deref(), Some("127.0.0.1:5051"));
    // admin, two masters, the watch.
    assert_eq!(
        tokio::task::block_in_place(|| server.client_connections()),
        4
    );

    // A master that registers later does not take over.
    let (third, _) = register_master(&zk_addr, "/mesos", "m3", 5053).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.current_leader().as_deref(), Some("127.0.0.1:5051"));

    // The leader's session ends (as when the master dies): ZooKeeper drops its znode and
    // the next lowest leads.
    drop(first);
    let change = within("failover", Duration::from_secs(5), w.wait_change())
        .await
        .expect("watch alive");
    assert_eq!(change.as_deref(), Some("127.0.0.1:5052"));
    assert!(
        admin.check_stat(&first_node).await.expect("stat").is_none(),
        "{first_node} should be gone"
    );

    // Deleting the znode works the same.
    admin
        .delete(&second_node, None)
        .await
        .expect("delete second");
    until_leader(&mut w, Some("127.0.0.1:5053"), Duration::from_secs(5)).await;
    drop(third);
    until_leader(&mut w, None, Duration::from_secs(5)).await;
    drop(admin);

    // ZooKeeper dies: no panic, and once the session is lost the leader is unknown.
    let err = w
        .wait_for_leader(Duration::from_millis(300))
        .await
        .expect_err("no master left");
    assert!(matches!(err, ZkError::NoLeader { .. }), "{err:?}");
    let (fourth, _) = register_master(&zk_addr, "/mesos", "m4", 5054).await;
    let leader = w.wait_for_leader(Duration::from_secs(5)).await;
    assert_eq!(leader.as_deref(), Ok("127.0.0.1:5054"));
    server.kill();
    // m4 dies with it, so the server expires its session once it is back.
    drop(fourth);
    until_leader(&mut w, None, Duration::from_secs(15)).await;

    // It comes back (same port, same data): the watch opens a new session and finds the
    // masters registered then (m4's znode lasts until the restarted server expires its session).
    tokio::task::block_in_place(|| server.launch());
    let (_fifth, _) = register_master(&zk_addr, "/mesos", "m5", 5055).await;
    until_leader(&mut w, Some("127.0.0.1:5055"), Duration::from_secs(30)).await;

    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(w);
}
