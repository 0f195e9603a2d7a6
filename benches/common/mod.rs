//! What the store benches share: the same measured run on SQLite (a file in a temporary folder)
//! and then on PostgreSQL (a database made for this run and dropped after it), when the server
//! at `LEADSYNC_BENCH_POSTGRES` (default: this machine kind's 127.0.0.1:5432, database `test`)
//! answers; a bench without one prints that PostgreSQL was skipped.

use std::future::Future;

/// Runs `run(store name, store url)` on SQLite, then on PostgreSQL. `what` names the SQLite
/// file and the PostgreSQL database (with this process's id, so two runs never share one).
pub fn on_both_stores<F, Fut>(what: &str, run: F)
where
    F: Fn(&'static str, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        run(
            "sqlite",
            format!("sqlite://{}", dir.path().join(format!("{what}.db")).display()),
        )
        .await;

        sqlx::any::install_default_drivers();
        let admin = std::env::var("LEADSYNC_BENCH_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let Ok(pool) = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&admin)
            .await
        else {
            println!("postgres: not reachable at {admin}; skipped");
            return;
        };
        let name = format!("leadsync_{what}_bench_{}", std::process::id());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).expect("url");
        run("postgres", format!("{base}/{name}")).await;
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&pool)
            .await
            .expect("drop database");
    });
}
