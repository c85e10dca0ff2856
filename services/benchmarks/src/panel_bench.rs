//! Issue 5: the real `frontend` binary under load (wrk, 64 connections),
//! next to a Flask panel written like the seed's and to a fixed page served
//! from memory (the most this machine, wrk and actix can do), all against
//! the same 1M-row table. Also the plan (EXPLAIN/ANALYZE) and the
//! single-client latency of every query the frontend runs.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{NaiveDateTime, TimeDelta};
use frontend::range::Range;
use frontend::store::{
    readings_statement, recent_query, Cursor, Order, ReadingFilter, CHART_BUCKET_SECS, CHART_HOURS,
    CHART_QUERY, CURSOR_QUERY, DAILY_QUERY, HOURLY_QUERY, RECENT_ROWS, WINDOW_ROWS,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use telemetry_core::reading::COLUMNS;
use telemetry_core::time::now_utc;

use crate::data::Readings;
use crate::db::{self, inline, Server};
use crate::process::{self, free_port, http_get, wait_for_http};
use crate::report::{mib, thousands, verdict, Table};

const DATABASE: &str = "bench_panel";

pub struct Options {
    pub rows: u64,
    pub duration_secs: u64,
    pub connections: u32,
    pub bin_dir: PathBuf,
    pub python: PathBuf,
    pub flask_app: PathBuf,
    pub url: String,
}

/// What wrk reported for one target.
#[derive(Debug, Clone)]
struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: String,
    /// CPU milliseconds per request of the serving process and of MariaDB.
    cpu_ms_per_request: f64,
    db_cpu_ms_per_request: f64,
}

pub async fn run(server: &Server, options: &Options) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let pool = server.fresh_database(DATABASE).await?;
    eprintln!("panel: filling {} rows ...", options.rows);
    db::fill(
        server,
        DATABASE,
        Readings::ending_now(options.rows),
        scratch.path(),
    )
    .await?;
    db::warm(&pool).await?;
    let db_pid = crate::spool_bench::server_pid(&pool).await;
    let mut conn = pool.get_conn().await?;
    explain_queries(&mut conn).await?;
    chart_prototypes(&mut conn).await?;
    long_range_charts(&mut conn).await?;
    drop(conn);
    pool.disconnect().await?;

    let stub_port = free_port()?;
    let mut stub = process::Server::start(
        "open-meteo-stub",
        Command::new(options.bin_dir.join("open-meteo-stub"))
            .arg(stub_port.to_string())
            .stdout(File::create(scratch.path().join("stub.log"))?)
            .stderr(File::create(scratch.path().join("stub.err"))?),
    )?;
    wait_for_http(&mut stub, stub_port, "/healthz", Duration::from_secs(20))?;

    // Ours.
    let port = free_port()?;
    let mut frontend = process::Server::start(
        "frontend",
        Command::new(options.bin_dir.join("frontend"))
            .env("APP__HTTP__HOST", "127.0.0.1")
            .env("APP__HTTP__PORT", port.to_string())
            .env("APP__DATABASE__HOST", &server.host)
            .env("APP__DATABASE__PORT", server.port.to_string())
            .env("APP__DATABASE__USER", &server.user)
            .env("APP__DATABASE__PASSWORD", &server.password)
            .env("APP__DATABASE__NAME", DATABASE)
            .env(
                "APP__WEATHER__BASE_URL",
                format!("http://127.0.0.1:{stub_port}"),
            )
            .env("APP__LOG__FORMAT", "json")
            .stdout(File::create(scratch.path().join("frontend.log"))?),
    )?;
    wait_for_http(&mut frontend, port, "/healthz", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(1));
    let rss_started = frontend.rss()?;
    let (status, page) = http_get(port, "/")?;
    ensure!(status == 200, "GET / answered {status}");
    let page_bytes = page.len();
    let mut range_pages = Vec::new();
    for range in ["7d", "30d", "1y"] {
        let (status, page) = http_get(port, &format!("/?range={range}"))?;
        ensure!(status == 200, "GET /?range={range} answered {status}");
        range_pages.push(format!("{range}: {} bytes", page.len()));
    }
    let page_text = String::from_utf8_lossy(&page);
    ensure!(
        page_text.contains("Bogotá") && !page_text.contains("last known data"),
        "the panel did not show fresh data from the database"
    );
    std::thread::sleep(Duration::from_secs(1));
    let rss_first_page = frontend.rss()?;
    let ours_page = wrk(port, "/", options, frontend.pid(), db_pid)?;
    let ours_cities = wrk(port, "/api/cities", options, frontend.pid(), db_pid)?;
    let ours_month = wrk(port, "/?range=30d", options, frontend.pid(), db_pid)?;
    let ours_year = wrk(port, "/?range=1y", options, frontend.pid(), db_pid)?;
    // What a browser gets: the cached brotli bytes (every browser sends
    // Accept-Encoding).
    let browser_month = wrk_with(
        port,
        "/?range=30d",
        BROWSER,
        options,
        frontend.pid(),
        db_pid,
    )?;
    let browser_year = wrk_with(port, "/?range=1y", BROWSER, options, frontend.pid(), db_pid)?;
    let ours_year_api = wrk(
        port,
        "/api/aggregates?city=Bogota&range=1y",
        options,
        frontend.pid(),
        db_pid,
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let rss_after_load = frontend.rss()?;
    frontend.check_running()?;
    drop(frontend);

    // The limit: a constant body of the same size, from memory.
    let fixed_port = free_port()?;
    let mut fixed = process::Server::start(
        "fixed page",
        Command::new(std::env::current_exe()?).args([
            "fixed-page",
            "--port",
            &fixed_port.to_string(),
            "--bytes",
            &page_bytes.to_string(),
        ]),
    )?;
    wait_for_http(&mut fixed, fixed_port, "/", Duration::from_secs(20))?;
    let fixed_load = wrk(fixed_port, "/", options, fixed.pid(), db_pid)?;
    drop(fixed);

    // The seed-style reference.
    let flask_port = free_port()?;
    let mut flask = process::Server::start(
        "flask reference",
        Command::new(&options.python)
            .arg(&options.flask_app)
            .env("PORT", flask_port.to_string())
            .env("DB_HOST", &server.host)
            .env("DB_PORT", server.port.to_string())
            .env("DB_USER", &server.user)
            .env("DB_PASSWORD", &server.password)
            .env("DB_NAME", DATABASE)
            .stdout(File::create(scratch.path().join("flask.log"))?)
            .stderr(File::create(scratch.path().join("flask.err"))?),
    )?;
    wait_for_http(&mut flask, flask_port, "/", Duration::from_secs(30))?;
    let flask_page = wrk(flask_port, "/", options, flask.pid(), db_pid)?;
    let flask_cities = wrk(flask_port, "/api/cities", options, flask.pid(), db_pid)?;
    drop(flask);
    drop(stub);

    let mut table = Table::new(&[
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "requests",
        "errors",
        "ours ÷ it (req/s)",
        "server CPU ms/req",
        "MariaDB CPU ms/req",
    ]);
    let rows = [
        ("ours `GET /` (frontend)", &ours_page, &ours_page),
        ("Flask reference `GET /`", &flask_page, &ours_page),
        (
            "fixed page from memory (the limit)",
            &fixed_load,
            &ours_page,
        ),
        ("ours `GET /?range=30d`", &ours_month, &ours_month),
        ("ours `GET /?range=1y`", &ours_year, &ours_year),
        (
            "ours `GET /?range=30d`, browser's Accept-Encoding",
            &browser_month,
            &browser_month,
        ),
        (
            "ours `GET /?range=1y`, browser's Accept-Encoding",
            &browser_year,
            &browser_year,
        ),
        (
            "ours `GET /api/aggregates?city=Bogota&range=1y`",
            &ours_year_api,
            &ours_year_api,
        ),
        ("ours `GET /api/cities`", &ours_cities, &ours_cities),
        (
            "Flask reference `GET /api/cities`",
            &flask_cities,
            &ours_cities,
        ),
    ];
    for (name, load, ours) in rows {
        table.row(vec![
            name.into(),
            format!("{:.0}", load.requests_per_sec),
            format!("{:.2}", load.p50_ms),
            format!("{:.2}", load.p99_ms),
            thousands(load.requests as f64),
            load.errors.clone(),
            format!("{:.2}×", ours.requests_per_sec / load.requests_per_sec),
            format!("{:.3}", load.cpu_ms_per_request),
            format!("{:.3}", load.db_cpu_ms_per_request),
        ]);
    }
    println!(
        "### Panel: {} connections, {} s each, wrk -t2 --latency; page is {} bytes ({})\n",
        options.connections,
        options.duration_secs,
        page_bytes,
        range_pages.join(", ")
    );
    table.print();

    let mut memory = Table::new(&["frontend VmRSS", "MiB"]);
    memory
        .row(vec!["idle after start".into(), mib(rss_started)])
        .row(vec!["after the first page".into(), mib(rss_first_page)])
        .row(vec!["idle after the load".into(), mib(rss_after_load)]);
    memory.print();

    let vs_flask = ours_page.requests_per_sec / flask_page.requests_per_sec;
    let idle = rss_started.max(rss_after_load);
    let mut goals = Table::new(&["goal", "figure", "verdict"]);
    goals
        .row(vec![
            "p99 < 20 ms for `/`".into(),
            format!("{:.1} ms", ours_page.p99_ms),
            verdict(ours_page.p99_ms < 20.0).into(),
        ])
        .row(vec![
            "p99 < 20 ms for `/?range=30d` (browser's Accept-Encoding)".into(),
            format!(
                "{:.1} ms (identity: {:.1} ms)",
                browser_month.p99_ms, ours_month.p99_ms
            ),
            verdict(browser_month.p99_ms < 20.0).into(),
        ])
        .row(vec![
            "p99 < 20 ms for `/?range=1y` (browser's Accept-Encoding)".into(),
            format!(
                "{:.1} ms (identity: {:.1} ms)",
                browser_year.p99_ms, ours_year.p99_ms
            ),
            verdict(browser_year.p99_ms < 20.0).into(),
        ])
        .row(vec![
            "≥ 20× Flask req/s on `/`".into(),
            format!("{vs_flask:.1}×"),
            verdict(vs_flask >= 20.0).into(),
        ])
        .row(vec![
            "idle RSS < 30 MB".into(),
            format!("{} MiB", mib(idle)),
            verdict(idle < 30 * 1000 * 1000).into(),
        ]);
    println!("### Panel: goals\n");
    goals.print();
    Ok(())
}

/// Loads `path` with wrk, accounting the CPU the serving process (`pid`) and
/// the database spent per request: what limits throughput on 2 cores.
/// The header a browser sends with every request.
const BROWSER: &[&str] = &["Accept-Encoding: gzip, deflate, br"];

fn wrk(port: u16, path: &str, options: &Options, pid: u32, db_pid: Option<u32>) -> Result<Load> {
    wrk_with(port, path, &[], options, pid, db_pid)
}

fn wrk_with(
    port: u16,
    path: &str,
    headers: &[&str],
    options: &Options,
    pid: u32,
    db_pid: Option<u32>,
) -> Result<Load> {
    eprintln!(
        "panel: wrk {path} on port {port} for {} s ...",
        options.duration_secs
    );
    let cpu_before = crate::report::process_cpu(pid).unwrap_or(f64::NAN);
    let db_before = db_pid
        .and_then(crate::report::process_cpu)
        .unwrap_or(f64::NAN);
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{}", options.connections),
            &format!("-d{}s", options.duration_secs),
        ])
        // A slow reference must show up as latency, not as dropped requests.
        .args(["--timeout", "10s", "--latency"])
        .args(headers.iter().flat_map(|header| ["-H", header]))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .context("running wrk (apt-get install -y wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{text}");
    let mut load = parse_wrk(&text)?;
    let cpu = crate::report::process_cpu(pid).unwrap_or(f64::NAN) - cpu_before;
    let db = db_pid
        .and_then(crate::report::process_cpu)
        .unwrap_or(f64::NAN)
        - db_before;
    load.cpu_ms_per_request = cpu * 1000.0 / load.requests.max(1) as f64;
    load.db_cpu_ms_per_request = db * 1000.0 / load.requests.max(1) as f64;
    Ok(load)
}

fn parse_wrk(text: &str) -> Result<Load> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|line| line.starts_with(prefix))
            .map(|line| line[prefix.len()..].trim().to_owned())
    };
    let requests_per_sec: f64 = field("Requests/sec:").context("no Requests/sec")?.parse()?;
    let p50_ms = duration_ms(&field("50%").context("no 50% latency (wrk --latency)")?)?;
    let p99_ms = duration_ms(&field("99%").context("no 99% latency")?)?;
    let requests = text
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    let mut errors = Vec::new();
    if let Some(socket) = field("Socket errors:") {
        errors.push(socket);
    }
    if let Some(non_2xx) = field("Non-2xx or 3xx responses:") {
        errors.push(format!("non-2xx {non_2xx}"));
    }
    Ok(Load {
        requests_per_sec,
        p50_ms,
        p99_ms,
        requests,
        errors: if errors.is_empty() {
            "0".into()
        } else {
            errors.join("; ")
        },
        cpu_ms_per_request: f64::NAN,
        db_cpu_ms_per_request: f64::NAN,
    })
}

/// wrk prints latencies as `812.00us`, `12.34ms` or `1.02s`.
fn duration_ms(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .context("no unit")?;
    let value: f64 = text[..split].parse()?;
    Ok(match &text[split..] {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        unit => bail!("unknown wrk unit {unit:?}"),
    })
}

/// A statement the frontend runs (from `frontend::store`), with the
/// parameters a real request binds.
struct Query {
    name: &'static str,
    runs_on: &'static str,
    sql: String,
    params: Vec<Value>,
}

fn frontend_queries(now: NaiveDateTime, some_id: u64) -> Vec<Query> {
    let city = "Bogotá".to_owned();
    let day_ago = now - TimeDelta::hours(CHART_HOURS);
    let listing = |name, runs_on, filter: ReadingFilter, order, cursor, limit| {
        let (sql, params) = readings_statement(&filter, order, cursor, limit);
        Query {
            name,
            runs_on,
            sql,
            params,
        }
    };
    let one_city = ReadingFilter {
        city: Some(city.clone()),
        ..ReadingFilter::default()
    };
    vec![
        listing(
            "window of a city (its newest readings; the first is its latest)",
            "the panel's data read (×7), which `/`, `/api/cities` and recent `/api/readings` pages use",
            one_city.clone(),
            Order::NewestFirst,
            None,
            WINDOW_ROWS,
        ),
        Query {
            name: "24 h chart of a city",
            runs_on: "`/` (×7)",
            sql: CHART_QUERY.into(),
            params: vec![
                city.as_str().into(),
                day_ago.into(),
                now.into(),
                CHART_BUCKET_SECS.into(),
            ],
        },
        Query {
            name: "latest 15 (the seed's query)",
            runs_on: "`/` (×1)",
            sql: recent_query(),
            params: vec![RECENT_ROWS.into()],
        },
        Query {
            name: "cursor of a reading",
            runs_on: "`/api/readings?before_id=`",
            sql: CURSOR_QUERY.into(),
            params: vec![some_id.into()],
        },
        listing(
            "listing, one city, since, newest first",
            "`/api/readings?city=&since=`",
            ReadingFilter {
                since: Some(day_ago),
                ..one_city.clone()
            },
            Order::NewestFirst,
            None,
            100,
        ),
        listing(
            "listing, one city, after a cursor",
            "`/api/readings?city=&before_id=`",
            one_city,
            Order::NewestFirst,
            Some(Cursor {
                fecha_registro: now - TimeDelta::hours(1),
                id: some_id,
            }),
            100,
        ),
        listing(
            "listing, all cities, newest first",
            "`/api/readings`",
            ReadingFilter::default(),
            Order::NewestFirst,
            None,
            100,
        ),
        listing(
            "listing, all cities, since/until, oldest first, after a cursor",
            "`/api/readings.csv?since=&until=` (each page)",
            ReadingFilter {
                city: None,
                since: Some(day_ago),
                until: Some(now),
            },
            Order::OldestFirst,
            Some(Cursor {
                fecha_registro: day_ago + TimeDelta::hours(1),
                id: some_id,
            }),
            1000,
        ),
        Query {
            name: "(not ours) latest per city by GROUP BY, as a naive panel would",
            runs_on: "nothing: shown for contrast",
            sql: format!(
                "SELECT {COLUMNS} FROM mediciones WHERE id IN (SELECT MAX(id) FROM mediciones GROUP BY ciudad)"
            ),
            params: vec![],
        },
    ]
}

/// Prints MariaDB's `ANALYZE` (EXPLAIN's columns plus the rows actually
/// read, `r_rows`) for each query with real parameters, and its mean
/// single-client latency.
async fn explain_queries(conn: &mut Conn) -> Result<()> {
    let now = now_utc();
    let some_id: u64 = conn
        .query_first("SELECT MAX(id) - 5000 FROM mediciones")
        .await?
        .unwrap_or(1);
    let queries = frontend_queries(now, some_id);
    println!(
        "### Panel: the frontend's queries on {} rows\n",
        thousands(db::count_on(conn).await? as f64)
    );
    let mut timing = Table::new(&[
        "query",
        "runs on",
        "mean ms (1 client, 50 runs)",
        "rows returned",
    ]);
    for query in &queries {
        let inlined = inline(&query.sql, &query.params);
        println!(
            "**{}** — runs on {}\n\n```sql\n{inlined}\n```\n",
            query.name, query.runs_on
        );
        let rows: Vec<Row> = conn.query(format!("ANALYZE {inlined}")).await?;
        let mut plan = Table::new(&[
            "id",
            "select_type",
            "table",
            "type",
            "possible_keys",
            "key",
            "key_len",
            "ref",
            "rows",
            "r_rows",
            "filtered",
            "r_filtered",
            "Extra",
        ]);
        for row in rows {
            let cells = (0..row.len()).map(|i| cell(row.as_ref(i))).collect();
            plan.row(cells);
        }
        plan.print();

        let runs = if query.runs_on.starts_with("nothing") {
            5
        } else {
            50
        };
        let started = Instant::now();
        let mut returned = 0;
        for _ in 0..runs {
            let result: Vec<Row> = conn.exec(&query.sql, query.params.clone()).await?;
            returned = result.len();
        }
        let mean = started.elapsed().as_secs_f64() * 1000.0 / runs as f64;
        timing.row(vec![
            query.name.into(),
            query.runs_on.into(),
            format!("{mean:.3}"),
            returned.to_string(),
        ]);
    }
    println!(
        "### Panel: single-client latency of each query (prepared, as the frontend runs them)\n"
    );
    timing.print();
    Ok(())
}

/// The chart query is the page's cost (7 per page). Two candidate fixes,
/// timed on the same table: a covering index (no row lookups), and reading
/// the raw 24 h rows to bucket in Rust (no temporary table, no filesort).
/// The index is dropped again so the load test runs on the real schema.
async fn chart_prototypes(conn: &mut Conn) -> Result<()> {
    let now = now_utc();
    let raw_params: Vec<Value> = vec![
        "Bogotá".into(),
        (now - TimeDelta::hours(CHART_HOURS)).into(),
        now.into(),
    ];
    // The frontend's own statement binds the bucket too.
    let chart_params: Vec<Value> = raw_params
        .iter()
        .cloned()
        .chain([Value::from(CHART_BUCKET_SECS)])
        .collect();
    let chart = (CHART_QUERY, &chart_params);
    let raw = (
        "SELECT fecha_registro, temperatura, humedad FROM mediciones \
         WHERE ciudad = ? AND fecha_registro >= ? AND fecha_registro <= ? ORDER BY fecha_registro",
        &raw_params,
    );
    let mut table = Table::new(&[
        "variant (prototype, not in the frontend)",
        "mean ms (1 client, 30 runs)",
        "rows returned",
    ]);
    let mut time = async |conn: &mut Conn, name: &str, (sql, params): (&str, &Vec<Value>)| {
        let started = Instant::now();
        let mut returned = 0;
        for _ in 0..30 {
            let rows: Vec<Row> = conn.exec(sql, params.clone()).await?;
            returned = rows.len();
        }
        let mean = started.elapsed().as_secs_f64() * 1000.0 / 30.0;
        table.row(vec![
            name.into(),
            format!("{mean:.3}"),
            returned.to_string(),
        ]);
        anyhow::Ok(())
    };
    time(conn, "chart query as is", chart).await?;
    time(conn, "raw 24 h rows of the city, bucketed in the app", raw).await?;
    eprintln!("panel: adding a covering index for the chart prototypes ...");
    conn.query_drop(
        "CREATE INDEX ix_bench_chart ON mediciones (ciudad, fecha_registro, temperatura, humedad)",
    )
    .await?;
    let result = async {
        let inlined = inline(chart.0, chart.1);
        let rows: Vec<Row> = conn.query(format!("EXPLAIN {inlined}")).await?;
        let plan: Vec<String> = rows
            .iter()
            .map(|row| format!("key={} Extra={}", cell(row.as_ref(5)), cell(row.as_ref(9))))
            .collect();
        eprintln!("panel: chart plan with the covering index: {plan:?}");
        time(
            conn,
            "chart query + covering index (ciudad, fecha_registro, temperatura, humedad)",
            chart,
        )
        .await?;
        time(conn, "raw rows + covering index, bucketed in the app", raw).await?;
        println!("Chart query with the covering index: {}\n", plan.join("; "));
        anyhow::Ok(())
    }
    .await;
    conn.query_drop("DROP INDEX ix_bench_chart ON mediciones")
        .await?;
    result?;
    println!("### Panel: the chart query, and two ways to make it cheaper\n");
    table.print();
    Ok(())
}

/// The long-range charts' reads, as the panel runs them (from the hourly
/// aggregates the trigger keeps), next to the same aggregation computed
/// from `mediciones` by a GROUP BY, which is what they replace.
async fn long_range_charts(conn: &mut Conn) -> Result<()> {
    let now = now_utc();
    let city = Value::from("Bogotá");
    let reference = |bucket: &str| {
        format!(
            "SELECT {bucket} AS bucket, COUNT(*), MIN(temperatura), AVG(temperatura), \
             MAX(temperatura), MIN(humedad), AVG(humedad), MAX(humedad) FROM mediciones \
             WHERE ciudad = ? AND fecha_registro >= ? GROUP BY bucket ORDER BY bucket"
        )
    };
    let hour_bucket = "CAST(DATE_FORMAT(fecha_registro, '%Y-%m-%d %H:00:00') AS DATETIME)";
    let cases = [
        (
            "30 days, hourly",
            HOURLY_QUERY.to_owned(),
            reference(hour_bucket),
            Range::Month,
        ),
        (
            "1 year, daily",
            DAILY_QUERY.to_owned(),
            reference("CAST(DATE(fecha_registro) AS DATETIME)"),
            Range::Year,
        ),
    ];
    let mut table = Table::new(&[
        "chart read (one city)",
        "ours: mean ms (aggregates)",
        "reference: mean ms (GROUP BY over mediciones)",
        "reference ÷ ours",
        "points",
        "readings counted",
    ]);
    for (name, ours, reference, range) in cases {
        let params = vec![city.clone(), Value::from(range.first_aggregate(now))];
        let mut timed = async |sql: &str| {
            let started = Instant::now();
            let mut result: Vec<Row> = Vec::new();
            for _ in 0..20 {
                result = conn.exec(sql, params.clone()).await?;
            }
            let mean = started.elapsed().as_secs_f64() * 1000.0 / 20.0;
            let counted: u64 = result
                .iter()
                .map(|row| row.get::<u64, _>(1).unwrap_or(0))
                .sum();
            anyhow::Ok((mean, result.len(), counted))
        };
        let (ours_ms, points, counted) = timed(&ours).await?;
        let (reference_ms, reference_points, reference_counted) = timed(&reference).await?;
        ensure!(
            (points, counted) == (reference_points, reference_counted),
            "{name}: the aggregates ({points} points, {counted} readings) disagree with \
             mediciones ({reference_points} points, {reference_counted} readings)"
        );
        table.row(vec![
            name.into(),
            format!("{ours_ms:.3}"),
            format!("{reference_ms:.3}"),
            format!("{:.0}×", reference_ms / ours_ms),
            points.to_string(),
            thousands(counted as f64),
        ]);
    }
    println!("### Panel: long-range chart reads, aggregates against a GROUP BY\n");
    table.print();
    Ok(())
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::NULL) => "NULL".into(),
        Some(Value::Bytes(bytes)) => String::from_utf8_lossy(bytes).replace('|', "\\|"),
        Some(other) => other.as_sql(false).trim_matches('\'').to_owned(),
    }
}

/// `fixed-page`: answers every GET with the same in-memory body. Started as
/// a child process by `run`, with actix's default workers, like the frontend.
pub async fn serve_fixed_page(port: u16, bytes: usize) -> Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let body = web::Bytes::from(fixed_body(bytes));
    HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("text/html; charset=utf-8")
                    .body(body)
            }
        }))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

fn fixed_body(bytes: usize) -> Vec<u8> {
    let mut body = b"<!doctype html><title>fixed</title><pre>".to_vec();
    body.resize(bytes.max(body.len()), b'x');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latency_units() {
        assert_eq!(duration_ms("812.00us").unwrap(), 0.812);
        assert_eq!(duration_ms("12.5ms").unwrap(), 12.5);
        assert_eq!(duration_ms("1.02s").unwrap(), 1020.0);
    }
}
