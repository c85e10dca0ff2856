//! The walking skeleton end to end: readings arrive through the proxy, the
//! panel shows them, a backup file appears and parses.

use std::process::Command;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use stack_tests::{eventually, Stack};
use telemetry_core::testing::city_names;

use crate::browser;

#[tokio::test(flavor = "multi_thread")]
async fn readings_reach_the_proxy_the_panel_and_the_backups() {
    let stack = tokio::task::spawn_blocking(|| Stack::up(&[("BACKUP_INTERVAL_SECS", "20")]))
        .await
        .unwrap();

    // Through the proxy with the driver, as the read-only panel account.
    let pool = mysql_async::Pool::new(stack.database_opts("panel"));
    // 15 rows (the seed's page) take three ticks of seven cities.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    type Row = (u64, String, Option<f64>, Option<u8>, String);
    let rows: Vec<Row> = loop {
        let rows: Vec<Row> = match pool.get_conn().await {
            Ok(mut conn) => conn
                .query(
                    "SELECT id, ciudad, temperatura, humedad, DATE_FORMAT(fecha_registro, '%Y-%m-%d %H:%i:%s') \
                     FROM mediciones ORDER BY id DESC LIMIT 15",
                )
                .await
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if rows.len() >= 15 {
            break rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "15 readings did not arrive through the proxy: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for city in city_names() {
        assert!(
            rows.iter().any(|row| row.1 == city),
            "{city} missing from {rows:?}"
        );
    }
    assert!(
        rows.iter().all(|row| row.2.is_some() && row.3.is_some()),
        "{rows:?}"
    );
    // The panel account really is read-only.
    let mut conn = pool.get_conn().await.unwrap();
    let denied = conn
        .query_drop("INSERT INTO mediciones (ciudad, fecha_registro, source) VALUES ('x', NOW(), 'simulated')")
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("denied"), "{denied}");
    drop(conn);
    pool.disconnect().await.ok();

    // Through the proxy with the command-line client, the seed's own query,
    // as the README shows it (TLS verified, password through a pipe).
    let client = Command::new(stack_tests::repository_root().join("scripts/db-client.sh"))
        .envs(stack.env())
        .env("PROXY_PORT", stack.proxy_port.to_string())
        .args([
            "panel",
            "-e",
            "SELECT * FROM mediciones ORDER BY id DESC LIMIT 15",
        ])
        .output()
        .expect("scripts/db-client.sh runs");
    let table = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(
        table.starts_with("id\tciudad\ttemperatura\thumedad\tfecha_registro"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 16, "header and 15 rows:\n{table}");

    // The panel lists the latest readings.
    let panel = reqwest::get(format!("http://127.0.0.1:{}/", stack.panel_port))
        .await
        .unwrap();
    assert_eq!(panel.status(), 200);
    let page = panel.text().await.unwrap();
    let newest = &rows[0];
    assert!(page.contains(&newest.1), "panel lacks {}", newest.1);

    // The same page in a real browser, with a screenshot for the README.
    let screenshot = browser::check_panel(stack.panel_port);
    println!("panel screenshot: {}", screenshot.display());

    // A backup file appears in the seed's format, with its manifest.
    let backups = stack.backups.path().to_owned();
    let snapshot: Vec<serde_json::Value> =
        eventually("a backup with rows", Duration::from_secs(60), || {
            let mut files: Vec<_> = std::fs::read_dir(&backups)
                .ok()?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| {
                    path.extension().is_some_and(|e| e == "json")
                        && !path.to_string_lossy().ends_with(".manifest.json")
                })
                .collect();
            files.sort();
            let newest = files.pop()?;
            let rows: Vec<serde_json::Value> =
                serde_json::from_slice(&std::fs::read(&newest).ok()?).ok()?;
            let manifest = std::path::PathBuf::from(format!("{}.manifest.json", newest.display()));
            (!rows.is_empty() && manifest.is_file()).then_some(rows)
        });
    let first = snapshot[0].as_object().unwrap();
    for key in ["id", "ciudad", "temperatura", "humedad", "fecha_registro"] {
        assert!(first.contains_key(key), "{key} missing in {first:?}");
    }
    let stamp = first["fecha_registro"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{stamp}"
    );
    println!(
        "e2e: {} rows through the proxy, panel on :{}, backup with {} rows",
        rows.len(),
        stack.panel_port,
        snapshot.len()
    );
}
