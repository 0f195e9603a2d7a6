//! Stores for tests: a fresh SQLite file and a fresh PostgreSQL database each time.

use std::sync::atomic::{AtomicU32, Ordering};

use leadsync::store::Store;

/// Where the tests find PostgreSQL (`LEADSYNC_TEST_POSTGRES`, default the local `test` database).
fn postgres_admin_url() -> String {
    std::env::var("LEADSYNC_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new SQLite store in a temporary folder (kept alive by the returned guard).
pub async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("leadsync.db").display());
    (Store::connect(&url).await.unwrap(), dir)
}

/// A new, empty PostgreSQL database, and its URL.
pub async fn postgres_url() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = postgres_admin_url();
    let name = format!("leadsync_t{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let admin_store = sqlx_admin(&admin).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin_store)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin_store)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    format!("{base}/{name}")
}

async fn sqlx_admin(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is needed by the store tests (set LEADSYNC_TEST_POSTGRES): {e}")
        })
}

/// The same empty state on both backends, named for assertion messages.
pub async fn stores() -> Vec<(&'static str, Store)> {
    let (sqlite, dir) = sqlite().await;
    // The folder must outlive the test; leak it (one small file per test).
    std::mem::forget(dir);
    let pg = Store::connect(&postgres_url().await).await.unwrap();
    vec![("sqlite", sqlite), ("postgres", pg)]
}
