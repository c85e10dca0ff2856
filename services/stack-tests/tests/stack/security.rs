//! The one-host stack as an attacker next to it would find it: no password
//! from the repository opens anything, root cannot log in through the proxy,
//! each account holds only its service's rights and must use TLS, the
//! services run without privileges, nothing secret shows in the containers'
//! environment, command lines or logs, and backup files are readable by the
//! directory's owner and nobody else.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use stack_tests::{assert_login_refused, docker, eventually, Stack};

/// The development passwords the repository once shipped
/// (compose/secrets.dev/, removed): each must open nothing.
const FORMER_REPOSITORY_PASSWORDS: [&str; 4] = [
    "dev-only-root-password-not-secret",
    "dev-only-sensor-password-not-secret",
    "dev-only-backup-password-not-secret",
    "dev-only-panel-password-not-secret",
];

const ACCOUNTS: [&str; 5] = ["root", "migrate", "sensor", "backup", "panel"];

const SERVICES: [&str; 3] = ["sensor-simulator", "backup-worker", "frontend"];

/// Owner of the backups directory: an ordinary user, as when someone runs
/// `docker compose up` from their own checkout.
const DIRECTORY_OWNER: u32 = 4242;

#[tokio::test(flavor = "multi_thread")]
async fn the_stack_keeps_its_secrets_and_its_privileges_to_itself() {
    let stack = tokio::task::spawn_blocking(|| {
        Stack::up_with(&[("BACKUP_INTERVAL_SECS", "15")], |backups| {
            std::os::unix::fs::chown(backups, Some(DIRECTORY_OWNER), Some(DIRECTORY_OWNER))
                .unwrap();
            std::fs::set_permissions(backups, std::fs::Permissions::from_mode(0o755)).unwrap();
        })
    })
    .await
    .unwrap();
    let passwords: Vec<(&str, String)> = ACCOUNTS
        .iter()
        .map(|account| (*account, stack.secret(account)))
        .collect();
    for (account, password) in &passwords {
        assert!(
            password.len() >= 32 && password.chars().all(|c| c.is_ascii_alphanumeric()),
            "{account}'s generated password is weak: {} characters",
            password.len()
        );
    }

    // root, with its real password and with every former repository one,
    // and every account with the repository's passwords: refused.
    let mut attempts = vec![("root", passwords[0].1.clone())];
    for account in ACCOUNTS {
        for password in FORMER_REPOSITORY_PASSWORDS {
            attempts.push((account, password.to_owned()));
        }
    }
    for (account, password) in &attempts {
        let opts = stack_tests::database_opts(
            "127.0.0.1",
            stack.proxy_port,
            account,
            password,
            stack.ca_file(),
        );
        assert_login_refused(opts, account).await;
    }
    println!(
        "security: {} logins with root or a repository password, all refused",
        attempts.len()
    );

    // Each account's rights, and TLS required of each.
    let expected_grants = [
        ("migrate", "GRANT ALL PRIVILEGES ON `telemetria`.*"),
        ("sensor", "GRANT SELECT, INSERT ON `telemetria`.*"),
        ("backup", "GRANT SELECT ON `telemetria`.*"),
        ("panel", "GRANT SELECT ON `telemetria`.*"),
    ];
    for (account, grant) in expected_grants {
        let mut conn = mysql_async::Conn::new(stack.database_opts(account))
            .await
            .unwrap_or_else(|error| panic!("{account} over TLS: {error}"));
        let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap();
        assert_eq!(grants.len(), 2, "{account}: {grants:?}");
        assert!(grants[0].contains("REQUIRE SSL"), "{account}: {grants:?}");
        assert!(grants[1].starts_with(grant), "{account}: {grants:?}");
        assert!(!grants.join(" ").contains("GRANT OPTION"), "{grants:?}");
        let cipher: Option<(String, String)> = conn
            .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
            .await
            .unwrap();
        println!("security: {account}: {} over {cipher:?}", grants[1]);
        conn.disconnect().await.ok();

        let plain = mysql_async::OptsBuilder::from_opts(stack.database_opts(account))
            .ssl_opts(None::<mysql_async::SslOpts>);
        assert_login_refused(plain, &format!("{account} without TLS")).await;
    }
    // The sensor adds rows and reads them (the backfill after downtime looks
    // for each city's last row), but changes and deletes none.
    let mut sensor = mysql_async::Conn::new(stack.database_opts("sensor"))
        .await
        .unwrap();
    for statement in [
        "UPDATE mediciones SET temperatura = 0",
        "DELETE FROM mediciones",
    ] {
        let denied = sensor.query_drop(statement).await.unwrap_err();
        assert!(
            denied.to_string().contains("denied"),
            "{statement}: {denied}"
        );
    }
    sensor.disconnect().await.ok();

    // The services: non-root, read-only root filesystem, no capabilities,
    // no privilege escalation, no secret in their environment or command
    // line.
    for service in SERVICES {
        let id = stack.container(service);
        let format = "{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.CapDrop}}|{{.HostConfig.CapAdd}}|{{.HostConfig.SecurityOpt}}|{{.State.Pid}}|{{json .Config.Env}}";
        let output = docker(&["inspect", "-f", format, &id]);
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let fields: Vec<&str> = text.splitn(7, '|').collect();
        assert_eq!(fields[0], "10001:10001", "{service} user: {text}");
        assert_eq!(fields[1], "true", "{service} read-only root: {text}");
        assert_eq!(fields[2], "[ALL]", "{service} cap_drop: {text}");
        assert_eq!(fields[3], "[]", "{service} cap_add: {text}");
        assert!(
            fields[4].contains("no-new-privileges:true"),
            "{service}: {text}"
        );
        let command_line = std::fs::read(format!("/proc/{}/cmdline", fields[5])).unwrap();
        for (account, password) in &passwords {
            assert!(
                !fields[6].contains(password.as_str()),
                "{account}'s password in {service}'s environment"
            );
            assert!(
                !String::from_utf8_lossy(&command_line).contains(password.as_str()),
                "{account}'s password on {service}'s command line"
            );
        }
        // The process really is 10001 (not just the configured user).
        let uid = std::fs::metadata(format!("/proc/{}", fields[5]))
            .unwrap()
            .uid();
        assert_eq!(uid, 10001, "{service} runs as {uid}");
    }

    // A backup appears; it belongs to the worker, its owner-to-be can read
    // it through the directory's ACL, others cannot.
    let backups = stack.backups.path().to_owned();
    let snapshot = eventually("a backup file", Duration::from_secs(60), || {
        std::fs::read_dir(&backups)
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.to_string_lossy().ends_with(".manifest.json"))
    });
    let mode = std::fs::metadata(&snapshot).unwrap().mode() & 0o777;
    assert_eq!(
        mode & 0o007,
        0,
        "{} is world-readable: {mode:o}",
        snapshot.display()
    );
    let read_as = |uid: u32| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "cat",
            ])
            .arg(&snapshot)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        read_as(DIRECTORY_OWNER),
        "the directory's owner cannot read {}",
        snapshot.display()
    );
    assert!(
        !read_as(DIRECTORY_OWNER + 1),
        "another user can read {}",
        snapshot.display()
    );
    println!("security: backup file mode {mode:o}, readable by the directory's owner {DIRECTORY_OWNER}, not by {}", DIRECTORY_OWNER + 1);

    // Nothing secret in any log, nor in our images' layers.
    let logs = stack.compose(&["logs", "--no-color"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    for image in [
        "telemetria/sensor-simulator:latest",
        "telemetria/backup-worker:latest",
        "telemetria/frontend:latest",
        "telemetria/mariadb:10.11",
        "telemetria/nginx:latest",
    ] {
        let history = docker(&["history", "--no-trunc", image]);
        let history = String::from_utf8_lossy(&history.stdout);
        for (account, password) in &passwords {
            assert!(
                !history.contains(password.as_str()),
                "{account}'s password in {image}"
            );
        }
    }
    for (account, password) in &passwords {
        assert!(
            !logs.contains(password.as_str()),
            "{account}'s password in the logs"
        );
    }
    println!("security: no password in {} bytes of logs, the environment, command lines or image history", logs.len());
}
