//! The store's fault inside the chaos run, once, at a seeded moment of the webhook traffic.
//! SQLite: the run's database lives on a small tmpfs the bench mounts; a ballast file fills it,
//! stays a few seconds, and is removed. PostgreSQL: the daemon reaches the server through a TCP
//! proxy the bench runs, which cuts every connection and refuses new ones for a few seconds,
//! then lets them through again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

/// When the fault comes and how long it stays: drawn from the seed alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorePlan {
    /// The fault starts right after this form submission (0-based) of the run phase.
    pub after_form: u32,
    /// How long the store stays full (or down).
    pub hold: Duration,
}

/// The seeded plan: after a form in the first half of the traffic (so deliveries keep coming
/// during the fault), for 3 to 6 s.
pub fn plan(seed: u64, forms: u32) -> StorePlan {
    let half = (forms / 2).max(1);
    StorePlan {
        after_form: (super::mix(seed, 0xD15C, 0) % u64::from(half)) as u32,
        hold: Duration::from_millis(3_000 + super::mix(seed, 0xD15C, 1) % 3_000),
    }
}

/// A tmpfs mounted by the bench, unmounted however the run ends.
pub struct Tmpfs {
    path: PathBuf,
}

/// Size of the chaos run's SQLite tmpfs: the database of a few hundred contacts and its WAL,
/// with room to spare before the ballast takes the rest.
const TMPFS_SIZE: &str = "size=64m";

/// The ballast file's name on the tmpfs.
const BALLAST: &str = "ballast";

impl Tmpfs {
    /// Mounts a tmpfs at `path` (created if missing); the error says why it could not.
    pub fn mount(path: &Path) -> Result<Tmpfs, String> {
        let why = |e: String| format!("cannot mount a tmpfs at {} for the store: {e}", path.display());
        std::fs::create_dir_all(path).map_err(|e| why(e.to_string()))?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| why(format!("running mount: {e}")))?;
        if !out.status.success() {
            return Err(why(format!(
                "mount -t tmpfs {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn free(&self) -> std::io::Result<()> {
        std::fs::remove_file(self.path.join(BALLAST))
    }
}

/// Writes a ballast file in `dir` until the file system refuses a write; returns the bytes written.
fn fill(dir: &Path) -> std::io::Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join(BALLAST))?;
    let block = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC: full
            Err(e) => return Err(e),
        }
    }
    let _ = f.sync_all();
    Ok(written)
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A TCP proxy in front of PostgreSQL that can be taken down and brought back.
pub struct Proxy {
    addr: SocketAddr,
    down: watch::Sender<bool>,
    counts: Arc<ProxyCounts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyCounts {
    cut: AtomicU64,
    refused: AtomicU64,
}

impl Proxy {
    /// Listens on a loopback port and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (down, watch_down) = watch::channel(false);
        let counts = Arc::new(ProxyCounts::default());
        let task = tokio::spawn(accept(listener, target, watch_down, counts.clone()));
        Ok(Proxy {
            addr,
            down,
            counts,
            task,
        })
    }

    /// `url` (a PostgreSQL URL) with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> anyhow::Result<String> {
        let mut u = url::Url::parse(url).with_context(|| format!("store URL {url:?}"))?;
        u.set_host(Some(&self.addr.ip().to_string()))?;
        u.set_port(Some(self.addr.port()))
            .map_err(|_| anyhow::anyhow!("store URL {url:?} takes no port"))?;
        Ok(u.to_string())
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a PostgreSQL URL points.
pub async fn postgres_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let u = url::Url::parse(url).with_context(|| format!("store URL {url:?}"))?;
    let host = u.host_str().unwrap_or("localhost").to_string();
    let port = u.port().unwrap_or(5432);
    tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .with_context(|| format!("{host}:{port} resolves to no address"))
}

async fn accept(
    listener: tokio::net::TcpListener,
    target: SocketAddr,
    down: watch::Receiver<bool>,
    counts: Arc<ProxyCounts>,
) {
    while let Ok((mut client, _)) = listener.accept().await {
        if *down.borrow() {
            // Refused: closed before a byte of the protocol.
            counts.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let mut down = down.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = down.wait_for(|d| *d) => {
                    counts.cut.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// The fault of one run's store.
pub enum StoreFault {
    /// SQLite on the bench's tmpfs.
    Disk(Tmpfs),
    /// PostgreSQL behind the bench's proxy.
    Outage(Proxy),
    /// Not injected, and why.
    Skipped(String),
}

/// What the store fault did, for the report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoreFaultReport {
    /// `disk full` (SQLite) or `store outage` (PostgreSQL).
    pub kind: String,
    /// Why it was not injected, when it was not.
    pub skipped: Option<String>,
    /// The seeded plan.
    pub after_form: u32,
    /// How long it was held.
    pub held: Duration,
    /// Ballast bytes written until the tmpfs was full (SQLite).
    pub ballast_bytes: u64,
    /// Open connections the proxy cut when it went down (PostgreSQL).
    pub connections_cut: u64,
    /// Connections refused by the proxy while it was down (PostgreSQL).
    pub connections_refused: u64,
    /// `/readyz` polls the daemon answered during the fault (a killed daemon answers none).
    pub readyz_polls: u32,
    /// Of those, the ones answered other than 200.
    pub readyz_failed: u32,
}

impl StoreFault {
    /// What the report calls this fault.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreFault::Disk(_) => "disk full",
            StoreFault::Outage(_) => "store outage",
            StoreFault::Skipped(_) => "store fault",
        }
    }

    /// Once the daemon on `port` answers (30 s at most: a kill may have it restarting), injects
    /// the fault, holds it `plan.hold` while polling the daemon's `/readyz`, then takes it away.
    pub async fn hold(&self, plan: StorePlan, port: u16) -> anyhow::Result<StoreFaultReport> {
        let mut report = StoreFaultReport {
            kind: self.kind().into(),
            after_form: plan.after_form,
            held: plan.hold,
            ..StoreFaultReport::default()
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let readyz = format!("http://127.0.0.1:{port}/readyz");
        let up = tokio::time::Instant::now();
        while http.get(&readyz).send().await.is_err() && up.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match self {
            StoreFault::Skipped(why) => {
                report.skipped = Some(why.clone());
                return Ok(report);
            }
            StoreFault::Disk(fs) => {
                let dir = fs.path.clone();
                report.ballast_bytes = tokio::task::spawn_blocking(move || fill(&dir)).await??;
            }
            StoreFault::Outage(proxy) => proxy.set_down(true),
        }
        let until = tokio::time::Instant::now() + plan.hold;
        while tokio::time::Instant::now() < until {
            if let Ok(r) = http.get(&readyz).send().await {
                report.readyz_polls += 1;
                if r.status() != 200 {
                    report.readyz_failed += 1;
                }
            }
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_millis(250))).await;
        }
        match self {
            StoreFault::Disk(fs) => fs.free().context("removing the ballast")?,
            StoreFault::Outage(proxy) => {
                proxy.set_down(false);
                report.connections_cut = proxy.counts.cut.load(Ordering::Relaxed);
                report.connections_refused = proxy.counts.refused.load(Ordering::Relaxed);
            }
            StoreFault::Skipped(_) => {}
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server: what the proxy forwards to.
    async fn echo() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Sends a byte and reads the echo; false when the connection was closed instead.
    async fn round_trip(s: &mut tokio::net::TcpStream) -> bool {
        if s.write_all(b"x").await.is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
            Ok(Ok(1))
        )
    }

    #[tokio::test]
    async fn the_outage_proxy_cuts_open_connections_refuses_new_ones_then_lets_them_through() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        let mut open = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut open).await, "forwarded before the outage");

        proxy.set_down(true);
        assert!(!round_trip(&mut open).await, "an open connection is cut");
        let mut during = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        assert!(!round_trip(&mut during).await, "a new one is refused");
        assert_eq!(proxy.counts.cut.load(Ordering::Relaxed), 1);
        assert_eq!(proxy.counts.refused.load(Ordering::Relaxed), 1);

        proxy.set_down(false);
        let mut after = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut after).await, "let through once the outage is over");
    }

    #[test]
    fn the_daemon_reaches_postgres_through_the_proxy_s_address() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await.unwrap();
            let url = proxy
                .url("postgres://postgres@127.0.0.1:5432/leadsync_chaos_1_chaos_42")
                .unwrap();
            assert_eq!(
                url,
                format!(
                    "postgres://postgres@127.0.0.1:{}/leadsync_chaos_1_chaos_42",
                    proxy.addr.port()
                )
            );
        });
    }
}
