//! Finding the leading Mesos master through ZooKeeper (`mesos://zk://…` master URLs).
//!
//! With several masters, only the leader serves frameworks, and the leader changes when it
//! dies. Mesos elects it with ZooKeeper: every master creates an ephemeral sequential znode
//! `json.info_NNNNNNNNNN` under the configured path (e.g. `/mesos/json.info_0000000003`),
//! holding its `MasterInfo` as JSON. The lowest sequence number is the leader; when its
//! session ends, ZooKeeper deletes the node and the next one leads. Other children
//! (`log_replicas`, protobuf `info_` nodes of old masters) are not for frameworks.
//!
//! [`watch_leader`] keeps a session open in a background task, re-reads the children on
//! every change (a ZooKeeper watch, not polling) and publishes the leader's `ip:port`
//! through a [`LeaderWatch`]. If the session expires or every server goes away it reports
//! "no leader" (as the Mesos detector does, since the leader may have gone meanwhile) and
//! opens a new session, trying all listed servers with backoff.
//!
//! The parsing parts ([`ZkUrl::parse`], [`leader_child`], [`master_address`]) are pure
//! functions so they can be tested without a server.

use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};
use zookeeper_client as zkc;

/// ZooKeeper's own default client port, used when a server in the URL has none.
pub const DEFAULT_PORT: u16 = 2181;

/// How long [`watch_leader`] waits for the first leader.
pub const DEFAULT_FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Prefix of the znodes Mesos masters (0.24 and later) register under the path.
pub const MASTER_ZNODE_PREFIX: &str = "json.info_";

/// Session timeout the client falls back to when asked for `Duration::ZERO`.
const CLIENT_DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// Why ZooKeeper could not tell the leading master.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZkError {
    /// The master URL is not a usable `zk://` URL. The URL is shown without its password.
    #[error("bad ZooKeeper URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given, credentials masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No server of the ensemble could be reached before the deadline.
    #[error("cannot reach ZooKeeper at {servers}: {message}")]
    Unreachable {
        /// `host:port,host:port`.
        servers: String,
        /// Details, including how long it tried.
        message: String,
    },
    /// ZooKeeper answered, but no master is registered (or the leader's znode is unusable).
    #[error("no Mesos master is registered under {path} in ZooKeeper at {servers}{}", detail_suffix(.detail))]
    NoLeader {
        /// The znode path from the URL, e.g. `/mesos`.
        path: String,
        /// `host:port,host:port`.
        servers: String,
        /// What was seen instead, if anything useful.
        detail: Option<String>,
    },
    /// A master's znode holds JSON without an address spate can connect to.
    #[error("MasterInfo has no usable address: {0}")]
    BadMasterInfo(String),
    /// The background task that follows the leader is gone (it never ends by itself).
    #[error("the watch of Mesos masters under {path} in ZooKeeper at {servers} has stopped")]
    Stopped {
        /// The znode path from the URL.
        path: String,
        /// `host:port,host:port`.
        servers: String,
    },
}

fn detail_suffix(detail: &Option<String>) -> String {
    match detail {
        Some(d) => format!(" ({d})"),
        None => String::new(),
    }
}

/// A parsed `zk://[user:pass@]host:port[,host:port…]/path` master URL.
///
/// `user:pass` is sent as ZooKeeper `digest` authentication, as Mesos does; it is never
/// printed (`Display` and `Debug` mask it).
#[derive(Clone, PartialEq, Eq)]
pub struct ZkUrl {
    servers: Vec<String>,
    path: String,
    auth: Option<String>,
}

impl ZkUrl {
    /// Parse a `zk://` URL. A server without a port gets [`DEFAULT_PORT`]; IPv6 addresses
    /// need brackets (`[::1]:2181`). A trailing `/` on the path is dropped.
    pub fn parse(url: &str) -> Result<ZkUrl, ZkError> {
        let bad = |reason: &str| ZkError::BadUrl {
            url: mask_credentials(url),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("zk://")
            .ok_or_else(|| bad("must start with zk://, e.g. zk://host1:2181,host2:2181/mesos"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => {
                return Err(bad(
                    "missing the znode path after the servers, e.g. zk://host:2181/mesos",
                ));
            }
        };
        let (auth, hosts) = match authority.rsplit_once('@') {
            Some((auth, hosts)) => (Some(auth), hosts),
            None => (None, authority),
        };
        let auth = match auth {
            None => None,
            Some(a) => match a.split_once(':') {
                Some((user, _)) if !user.is_empty() => Some(a.to_string()),
                _ => return Err(bad("credentials must be user:password@")),
            },
        };
        if hosts.is_empty() {
            return Err(bad("no ZooKeeper server listed"));
        }
        let servers = hosts
            .split(',')
            .map(parse_server)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|reason| bad(&reason))?;
        let path = normalize_path(path).map_err(|reason| bad(&reason))?;
        Ok(ZkUrl {
            servers,
            path,
            auth,
        })
    }

    /// The servers as `host:port`, in the URL's order.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The servers joined with `,` (ZooKeeper's connect string without a chroot).
    pub fn servers_joined(&self) -> String {
        self.servers.join(",")
    }

    /// The znode the masters register under, e.g. `/mesos`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the URL carries `user:pass@` credentials.
    pub fn has_credentials(&self) -> bool {
        self.auth.is_some()
    }
}

impl FromStr for ZkUrl {
    type Err = ZkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ZkUrl::parse(s)
    }
}

impl fmt::Display for ZkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Some(a) => match a.split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => "***@".to_string(),
            },
            None => String::new(),
        };
        write!(f, "zk://{auth}{}{}", self.servers_joined(), self.path)
    }
}

impl fmt::Debug for ZkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ZkUrl({self})")
    }
}

/// `zk://user:secret@h/p` → `zk://user:***@h/p`, so errors can quote the URL.
fn mask_credentials(url: &str) -> String {
    let Some(rest) = url.strip_prefix("zk://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("zk://{user}:***{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

fn parse_server(server: &str) -> Result<String, String> {
    let server = server.trim();
    if server.is_empty() {
        return Err("empty server in the list".to_string());
    }
    let (host, port) = if let Some(bracketed) = server.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("server {server:?}: unclosed ["))?;
        if ip.is_empty() || ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "server {server:?}: not an IPv6 address in brackets"
            ));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("server {server:?}: expected :port after ]"))?,
            ),
        };
        (format!("[{ip}]"), port)
    } else {
        match server.split_once(':') {
            Some((host, port)) => {
                if port.contains(':') {
                    return Err(format!(
                        "server {server:?}: IPv6 addresses need brackets, e.g. [::1]:2181"
                    ));
                }
                (host.to_string(), Some(port))
            }
            None => (server.to_string(), None),
        }
    };
    if !host.starts_with('[') && !valid_host(&host) {
        return Err(format!("server {server:?}: bad host name"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("server {server:?}: bad port {p:?}")),
        },
    };
    Ok(format!("{host}:{port}"))
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn normalize_path(path: &str) -> Result<String, String> {
    let trimmed = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    if trimmed == "/" {
        return Err("the znode path is empty: name the one the masters use, e.g. /mesos".into());
    }
    for segment in trimmed[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("bad znode path {path:?}"));
        }
        if segment
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#'))
        {
            return Err(format!("bad character in znode path {path:?}"));
        }
    }
    Ok(trimmed.to_string())
}

/// The child of the masters' path that names the leader: the `json.info_NNNNNNNNNN` with the
/// lowest sequence number. Other children, and names whose suffix is not a number, are
/// ignored. `None` when no master is registered.
pub fn leader_child<S: AsRef<str>>(children: &[S]) -> Option<&str> {
    children
        .iter()
        .map(AsRef::as_ref)
        .filter_map(|name| {
            let seq = name.strip_prefix(MASTER_ZNODE_PREFIX)?;
            if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // ZooKeeper's counter is a signed 32-bit number printed with 10 digits; u64
            // leaves room and still orders them correctly.
            Some((seq.parse::<u64>().ok()?, name))
        })
        .min_by_key(|(seq, _)| *seq)
        .map(|(_, name)| name)
}

/// The `host:port` to reach a master, from its `MasterInfo` JSON znode: `address.ip` and
/// `address.port`; else `address.hostname`; else the top-level `hostname` and `port`; else
/// the `pid` (`master@ip:port`). IPv6 addresses come back in brackets.
pub fn master_address(json: &[u8]) -> Result<String, ZkError> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| ZkError::BadMasterInfo(format!("not JSON: {e}")))?;
    let info = value
        .as_object()
        .ok_or_else(|| ZkError::BadMasterInfo("not a JSON object".into()))?;
    if let Some(address) = info.get("address").and_then(Value::as_object)
        && let Some(port) = json_port(address.get("port"))
    {
        for key in ["ip", "hostname"] {
            if let Some(host) = json_host(address.get(key)) {
                return Ok(host_port(host, port));
            }
        }
    }
    if let (Some(host), Some(port)) = (json_host(info.get("hostname")), json_port(info.get("port")))
    {
        return Ok(host_port(host, port));
    }
    if let Some(pid) = info.get("pid").and_then(Value::as_str)
        && let Some(addr) = address_from_pid(pid)
    {
        return Ok(addr);
    }
    Err(ZkError::BadMasterInfo(
        "none of address.ip/address.port, address.hostname, hostname/port or pid is set".into(),
    ))
}

fn json_port(v: Option<&Value>) -> Option<u16> {
    let n = match v? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse::<u64>().ok()?,
        _ => return None,
    };
    u16::try_from(n).ok().filter(|p| *p > 0)
}

fn json_host(v: Option<&Value>) -> Option<&str> {
    let host = v?.as_str()?.trim();
    let ok = !host.is_empty()
        && !host
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'));
    ok.then_some(host)
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `master@10.0.0.1:5050` → `10.0.0.1:5050`.
fn address_from_pid(pid: &str) -> Option<String> {
    let (_, addr) = pid.split_once('@')?;
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let host = json_host(Some(&Value::String(host.to_string())))?.to_string();
    Some(host_port(&host, port))
}

/// The leading master as ZooKeeper says, kept current by a background task.
///
/// Dropping it stops the task and closes its ZooKeeper session.
pub struct LeaderWatch {
    rx: watch::Receiver<Option<String>>,
    url: ZkUrl,
    task: JoinHandle<()>,
}

impl LeaderWatch {
    /// The leader's `host:port` now, or `None` while there is none (during a failover, or
    /// after the ZooKeeper session was lost and before a new one read the masters).
    pub fn current_leader(&self) -> Option<String> {
        self.rx.borrow().clone()
    }

    /// Wait for the next change of leader and return the new value. "Next" is relative to
    /// what `watch_leader`, [`Self::wait_change`] or [`Self::wait_for_leader`] last saw
    /// ([`Self::current_leader`] only peeks), so a change is never missed between calls.
    pub async fn wait_change(&mut self) -> Result<Option<String>, ZkError> {
        self.rx.changed().await.map_err(|_| self.stopped())?;
        Ok(self.rx.borrow_and_update().clone())
    }

    /// The leader, waiting up to `timeout` while there is none (e.g. to retry a call after
    /// the leader failed).
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> Result<String, ZkError> {
        let waited = tokio::time::timeout(timeout, async {
            self.rx.wait_for(Option::is_some).await.map(|l| l.clone())
        })
        .await;
        match waited {
            Ok(Ok(Some(leader))) => Ok(leader),
            Ok(Ok(None) | Err(_)) => Err(self.stopped()),
            Err(_) => Err(ZkError::NoLeader {
                path: self.url.path.clone(),
                servers: self.url.servers_joined(),
                detail: Some(format!("none for {timeout:?}")),
            }),
        }
    }

    /// Another receiver of the same updates, for a task that wants its own.
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.rx.clone()
    }

    /// The URL being watched.
    pub fn url(&self) -> &ZkUrl {
        &self.url
    }

    fn stopped(&self) -> ZkError {
        ZkError::Stopped {
            path: self.url.path.clone(),
            servers: self.url.servers_joined(),
        }
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for LeaderWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderWatch")
            .field("url", &self.url)
            .field("leader", &*self.rx.borrow())
            .finish()
    }
}

/// Follow the leading master registered under `url`, waiting at most
/// [`DEFAULT_FIRST_LEADER_TIMEOUT`] for the first one. `session_timeout` is the ZooKeeper
/// session timeout to ask for (the server bounds it; `Duration::ZERO` means 6 s): how soon
/// a lost connection counts as a lost session.
pub async fn watch_leader(url: &ZkUrl, session_timeout: Duration) -> Result<LeaderWatch, ZkError> {
    watch_leader_within(url, session_timeout, DEFAULT_FIRST_LEADER_TIMEOUT).await
}

/// [`watch_leader`] with the wait for the first leader given. On timeout the error tells
/// whether ZooKeeper could not be reached or no master was registered.
pub async fn watch_leader_within(
    url: &ZkUrl,
    session_timeout: Duration,
    first_leader_timeout: Duration,
) -> Result<LeaderWatch, ZkError> {
    let (leader_tx, rx) = watch::channel(None);
    let (health_tx, health_rx) = watch::channel(Health::default());
    let task = tokio::spawn(run(url.clone(), session_timeout, leader_tx, health_tx));
    let mut watch = LeaderWatch {
        rx,
        url: url.clone(),
        task,
    };
    let first = tokio::time::timeout(first_leader_timeout, async {
        watch.rx.wait_for(Option::is_some).await.map(|_| ())
    })
    .await;
    match first {
        Ok(Ok(())) => Ok(watch),
        Ok(Err(_)) => Err(watch.stopped()),
        Err(_) => {
            let health = health_rx.borrow().clone();
            let waited = format!("for {first_leader_timeout:?}");
            Err(if health.connected {
                ZkError::NoLeader {
                    path: url.path.clone(),
                    servers: url.servers_joined(),
                    detail: Some(match health.problem {
                        Some(p) => format!("{p}; waited {waited}"),
                        None => format!("waited {waited}"),
                    }),
                }
            } else {
                ZkError::Unreachable {
                    servers: url.servers_joined(),
                    message: format!(
                        "{} (tried {waited})",
                        health
                            .problem
                            .as_deref()
                            .unwrap_or("no session established")
                    ),
                }
            })
        }
    }
}

/// What the background task knows beyond the leader, for the first-leader timeout error.
#[derive(Clone, Debug, Default)]
struct Health {
    /// A session is established now.
    connected: bool,
    /// The latest reason there is no leader.
    problem: Option<String>,
}

/// Exponential backoff between attempts, so a dead ensemble is not hammered.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(Self::MAX);
        d
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

fn publish(tx: &watch::Sender<Option<String>>, url: &ZkUrl, leader: Option<String>) {
    let changed = tx.send_if_modified(|current| {
        if *current == leader {
            return false;
        }
        *current = leader.clone();
        true
    });
    if changed {
        match &leader {
            Some(addr) => info!(zk = %url, leader = %addr, "leading Mesos master"),
            None => info!(zk = %url, "no leading Mesos master"),
        }
    }
}

fn set_problem(health: &watch::Sender<Health>, problem: Option<String>) {
    health.send_modify(|h| h.problem = problem);
}

/// Sessions one after another, forever; ends only when aborted (its [`LeaderWatch`] dropped).
async fn run(
    url: ZkUrl,
    session_timeout: Duration,
    leader: watch::Sender<Option<String>>,
    health: watch::Sender<Health>,
) {
    let mut backoff = Backoff::new();
    loop {
        let client = match connect(&url, session_timeout).await {
            Ok(client) => client,
            Err(message) => {
                let delay = backoff.next();
                warn!(zk = %url, error = %message, ?delay, "cannot reach ZooKeeper; retrying");
                set_problem(&health, Some(message));
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.reset();
        info!(zk = %url, session = %client.session_id(), "ZooKeeper session established");
        health.send_modify(|h| {
            h.connected = true;
            h.problem = None;
        });
        // Its own task so that a panic in it (or in the client) ends only this session; the
        // JoinSet aborts it when this task is aborted.
        let mut session = JoinSet::new();
        session.spawn(follow(client, url.clone(), leader.clone(), health.clone()));
        let why = match session.join_next().await {
            Some(Ok(why)) => why,
            Some(Err(e)) => format!("watch task failed: {e}"),
            None => "watch task missing".to_string(),
        };
        warn!(zk = %url, reason = %why, "ZooKeeper session ended; opening a new one");
        // Without a session the leader may have changed unseen: say so rather than keep a
        // stale address.
        publish(&leader, &url, None);
        health.send_modify(|h| {
            h.connected = false;
            h.problem = Some(format!("ZooKeeper session ended: {why}"));
        });
        tokio::time::sleep(backoff.next()).await;
    }
}

async fn connect(url: &ZkUrl, session_timeout: Duration) -> Result<zkc::Client, String> {
    // Fail eagerly once every server was tried, so this loop (not the client) decides the
    // backoff and the caller hears "unreachable" early.
    let mut connector = zkc::Client::connector()
        .with_session_timeout(session_timeout)
        .with_fail_eagerly();
    if let Some(auth) = &url.auth {
        connector = connector.with_auth("digest", auth.as_bytes());
    }
    let limit = if session_timeout.is_zero() {
        CLIENT_DEFAULT_SESSION_TIMEOUT
    } else {
        session_timeout
    } + Duration::from_secs(2);
    match tokio::time::timeout(limit, connector.connect(&url.servers_joined())).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(zkc::Error::NoHosts)) => Err("no server accepted a connection".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no session established within {limit:?}")),
    }
}

enum Read {
    Leader(String),
    NoMaster,
    Vanished,
    Bad(String),
    Failed(zkc::Error),
}

async fn read_leader(client: &zkc::Client, path: &str, children: &[String]) -> Read {
    let Some(child) = leader_child(children) else {
        return Read::NoMaster;
    };
    let znode = format!("{}/{child}", path.trim_end_matches('/'));
    match client.get_data(&znode).await {
        Ok((data, _)) => match master_address(&data) {
            Ok(addr) => Read::Leader(addr),
            Err(e) => Read::Bad(format!("leader znode {znode}: {e}")),
        },
        Err(zkc::Error::NoNode) => Read::Vanished,
        Err(e) => Read::Failed(e),
    }
}

/// One session: list the masters with a watch, publish the leader, wait for the watch,
/// again. Returns why the session ended.
async fn follow(
    client: zkc::Client,
    url: ZkUrl,
    leader: watch::Sender<Option<String>>,
    health: watch::Sender<Health>,
) -> String {
    let path = url.path();
    let mut retry = Backoff::new();
    loop {
        let state = client.state();
        if state.is_terminated() {
            return format!("session {state}");
        }
        let watched = match client.list_and_watch_children(path).await {
            Ok((children, watcher)) => match read_leader(&client, path, &children).await {
                Read::Leader(addr) => {
                    publish(&leader, &url, Some(addr));
                    set_problem(&health, None);
                    Ok(watcher)
                }
                Read::NoMaster => {
                    publish(&leader, &url, None);
                    set_problem(
                        &health,
                        Some(format!("{path} has no {MASTER_ZNODE_PREFIX} child")),
                    );
                    Ok(watcher)
                }
                // The leader left between the listing and the read: list again.
                Read::Vanished => continue,
                Read::Bad(message) => {
                    warn!(zk = %url, problem = %message, "unusable leading master znode");
                    publish(&leader, &url, None);
                    set_problem(&health, Some(message));
                    Ok(watcher)
                }
                Read::Failed(e) => Err(e),
            },
            Err(zkc::Error::NoNode) => {
                publish(&leader, &url, None);
                set_problem(&health, Some(format!("{path} does not exist")));
                match client.check_and_watch_stat(path).await {
                    // Created meanwhile.
                    Ok((Some(_), _)) => continue,
                    Ok((None, watcher)) => Ok(watcher),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let watcher = match watched {
            Ok(watcher) => watcher,
            Err(e) => {
                let state = client.state();
                if state.is_terminated() {
                    return format!("session {state}: {e}");
                }
                let delay = retry.next();
                if delay >= Backoff::MAX {
                    // Not a blip (e.g. an ACL that denies reading the path): say so.
                    warn!(zk = %url, error = %e, ?delay, "ZooKeeper request failed; retrying");
                } else {
                    debug!(zk = %url, error = %e, ?delay, "ZooKeeper request failed; retrying");
                }
                set_problem(&health, Some(format!("reading {path}: {e}")));
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        retry.reset();
        let event = watcher.changed().await;
        if event.event_type == zkc::EventType::Session && event.session_state.is_terminated() {
            return format!("session {}", event.session_state);
        }
        debug!(zk = %url, ?event, "masters changed; reading them again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_servers_and_path() {
        let url = ZkUrl::parse("zk://10.0.0.1:2181,zk2:2182,[::1]:2183/mesos").unwrap();
        assert_eq!(url.servers(), ["10.0.0.1:2181", "zk2:2182", "[::1]:2183"]);
        assert_eq!(url.path(), "/mesos");
        assert_eq!(url.servers_joined(), "10.0.0.1:2181,zk2:2182,[::1]:2183");
        assert!(!url.has_credentials());
        assert_eq!(
            url.to_string(),
            "zk://10.0.0.1:2181,zk2:2182,[::1]:2183/mesos"
        );
    }

    #[test]
    fn default_port_nested_path_and_trailing_slash() {
        let url: ZkUrl = "zk://zk1,[::1]/a/b/mesos/".parse().unwrap();
        assert_eq!(url.servers(), ["zk1:2181", "[::1]:2181"]);
        assert_eq!(url.path(), "/a/b/mesos");
    }

    #[test]
    fn credentials_are_kept_but_never_shown() {
        let url = ZkUrl::parse("zk://alice:s3cret@127.0.0.1:2181/mesos").unwrap();
        assert!(url.has_credentials());
        assert_eq!(url.servers(), ["127.0.0.1:2181"]);
        assert_eq!(url.to_string(), "zk://alice:***@127.0.0.1:2181/mesos");
        assert!(!format!("{url:?}").contains("s3cret"));
        let err = ZkUrl::parse("zk://alice:s3cret@127.0.0.1:0/mesos").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(err.to_string().contains("alice:***@"), "{err}");
    }

    #[test]
    fn rejects_bad_urls_naming_the_problem() {
        let cases = [
            ("127.0.0.1:2181/mesos", "must start with zk://"),
            ("mesos://zk://127.0.0.1:2181/mesos", "must start with zk://"),
            ("zk://127.0.0.1:2181", "missing the znode path"),
            ("zk://127.0.0.1:2181/", "znode path is empty"),
            ("zk:///mesos", "no ZooKeeper server"),
            ("zk://a:1,,b:2/mesos", "empty server"),
            ("zk://a:x/mesos", "bad port \"x\""),
            ("zk://a:0/mesos", "bad port \"0\""),
            ("zk://a:70000/mesos", "bad port"),
            ("zk://::1:2181/mesos", "need brackets"),
            ("zk://[zz]:2181/mesos", "IPv6"),
            ("zk://ho st:1/mesos", "bad host"),
            ("zk://a:1/me//sos", "bad znode path"),
            ("zk://a:1/mesos/..", "bad znode path"),
            ("zk://a:1/me sos", "bad character"),
            ("zk://:pw@a:1/mesos", "user:password@"),
            ("zk://nopass@a:1/mesos", "user:password@"),
        ];
        for (url, want) in cases {
            let err = ZkUrl::parse(url).expect_err(url);
            let text = err.to_string();
            assert!(matches!(err, ZkError::BadUrl { .. }), "{url}: {err:?}");
            assert!(text.contains(want), "{url}: {text}");
            if !url.contains('@') {
                assert!(text.contains(&format!("{url:?}")), "{url}: {text}");
            }
        }
    }

    #[test]
    fn leader_is_lowest_json_info_sequence() {
        let children = [
            "log_replicas",
            "json.info_0000000007",
            "info_0000000001",
            "json.info_0000000003",
            "json.info_",
            "json.info_00000000x2",
            "json.info_0000000012",
        ];
        assert_eq!(leader_child(&children), Some("json.info_0000000003"));
        // Numeric, not lexicographic, order (the counter can pass 10 digits' width only if
        // it wraps, but be safe).
        let children = vec!["json.info_10".to_string(), "json.info_9".to_string()];
        assert_eq!(leader_child(&children), Some("json.info_9"));
    }

    #[test]
    fn no_leader_without_json_info_children() {
        let none: [&str; 0] = [];
        assert_eq!(leader_child(&none), None);
        assert_eq!(
            leader_child(&["log_replicas", "info_0000000000", "json.info"]),
            None
        );
    }

    #[test]
    fn address_from_real_master_info() {
        // What a Mesos 1.x master writes (JSON of MasterInfo).
        let json = br#"{"address":{"hostname":"m1.example","ip":"10.0.0.5","port":5050},
            "hostname":"m1.example","id":"a8c1-0001","ip":84017162,
            "pid":"master@10.0.0.5:5050","port":5050,"version":"1.12.0"}"#;
        assert_eq!(master_address(json).unwrap(), "10.0.0.5:5050");
    }

    #[test]
    fn address_fallbacks() {
        let cases: [(&str, &str); 7] = [
            (
                r#"{"address":{"hostname":"m1","port":5051},"pid":"master@1.1.1.1:9"}"#,
                "m1:5051",
            ),
            (
                r#"{"address":{"ip":""},"hostname":"m2","port":5052,"pid":"master@1.1.1.1:9"}"#,
                "m2:5052",
            ),
            (
                r#"{"hostname":"m3","pid":"master@10.1.2.3:5053"}"#,
                "10.1.2.3:5053",
            ),
            (r#"{"pid":"master@10.1.2.4:5054"}"#, "10.1.2.4:5054"),
            (r#"{"address":{"ip":"::1","port":5055}}"#, "[::1]:5055"),
            (
                r#"{"address":{"ip":"10.0.0.6","port":"5056"}}"#,
                "10.0.0.6:5056",
            ),
            (
                r#"{"address":{"ip":"10.0.0.7","port":0},"hostname":"m7","port":5057}"#,
                "m7:5057",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(master_address(json.as_bytes()).unwrap(), want, "{json}");
        }
    }

    #[test]
    fn unusable_master_info_is_an_error() {
        for json in [
            "",
            "not json",
            "[1,2]",
            "{}",
            r#"{"address":{"ip":"10.0.0.1"}}"#,
            r#"{"address":{"ip":"10.0.0.1","port":70000}}"#,
            r#"{"hostname":"h"}"#,
            r#"{"pid":"master@10.0.0.1"}"#,
            r#"{"pid":"10.0.0.1:5050"}"#,
            r#"{"address":{"ip":"bad host","port":5050}}"#,
        ] {
            let err = master_address(json.as_bytes()).expect_err(json);
            assert!(matches!(err, ZkError::BadMasterInfo(_)), "{json}: {err:?}");
        }
    }

    #[test]
    fn error_messages_name_path_and_servers() {
        let e = ZkError::NoLeader {
            path: "/mesos".into(),
            servers: "127.0.0.1:15150".into(),
            detail: None,
        };
        assert_eq!(
            e.to_string(),
            "no Mesos master is registered under /mesos in ZooKeeper at 127.0.0.1:15150"
        );
        let e = ZkError::NoLeader {
            path: "/mesos".into(),
            servers: "127.0.0.1:15150".into(),
            detail: Some("/mesos does not exist".into()),
        };
        assert!(
            e.to_string()
                .ends_with("at 127.0.0.1:15150 (/mesos does not exist)")
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let mut b = Backoff::new();
        let seq: Vec<_> = (0..8).map(|_| b.next().as_millis()).collect();
        assert_eq!(seq, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn unreachable_ensemble_times_out_with_a_clear_error() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let url = ZkUrl::parse(&format!("zk://127.0.0.1:{port}/mesos")).unwrap();
        let err = watch_leader_within(&url, Duration::from_secs(2), Duration::from_millis(800))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ZkError::Unreachable { .. }), "{err:?}");
        assert!(
            text.starts_with(&format!("cannot reach ZooKeeper at 127.0.0.1:{port}")),
            "{text}"
        );
    }
}
