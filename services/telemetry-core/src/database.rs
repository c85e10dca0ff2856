//! Connection pool, its settings and errors (migrations: `migration`).

use std::time::Duration;

use mysql_async::{OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};
use secrecy::{ExposeSecret, SecretString};

use crate::settings::{DatabaseSettings, SettingsError};

/// Each message includes its cause and no variant has a `source`: our logs
/// print errors with `%error` (Display only), and a reporter that walks the
/// chain would otherwise print the cause twice.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
    /// The server could not prove it is ours (certificate from another
    /// authority, for another name, or no TLS offered): the handshake stopped
    /// before the login, so the password never left this process.
    #[error("refused the database server, password not sent: {0}")]
    Untrusted(String),
    #[error("database error: {0}")]
    Driver(mysql_async::Error),
    #[error("migration failed: {0}")]
    Migration(refinery::Error),
}

// By hand rather than `#[from]`: that would make the cause a `source` as
// well as part of the message.
impl From<refinery::Error> for DatabaseError {
    fn from(error: refinery::Error) -> Self {
        Self::Migration(error)
    }
}

impl From<mysql_async::Error> for DatabaseError {
    fn from(error: mysql_async::Error) -> Self {
        match tls_failure(&error) {
            Some(reason) => Self::Untrusted(reason),
            None => Self::Driver(error),
        }
    }
}

/// Why the TLS handshake failed, if that is what `error` is. rustls reports
/// a refused certificate through the stream, as an I/O error wrapping it.
fn tls_failure(error: &mysql_async::Error) -> Option<String> {
    use mysql_async::{DriverError, Error, IoError};
    match error {
        Error::Io(IoError::Tls(tls)) => Some(tls.to_string()),
        Error::Io(IoError::Io(io)) => io
            .get_ref()
            .filter(|inner| inner.is::<rustls::Error>())
            .map(|inner| format!("TLS: {inner}")),
        Error::Driver(DriverError::NoClientSslFlagFromServer) => {
            Some("the server does not offer TLS".into())
        }
        _ => None,
    }
}

impl DatabaseError {
    /// The server failed to prove it is ours: worth an operator's attention
    /// every time, unlike an outage.
    pub fn is_untrusted(&self) -> bool {
        matches!(self, Self::Untrusted(_))
    }

    /// The server's error code, when the server refused (1142: command
    /// denied, 1146: no such table, 1406: data too long, …).
    pub fn server_code(&self) -> Option<u16> {
        match self {
            Self::Driver(mysql_async::Error::Server(error)) => Some(error.code),
            _ => None,
        }
    }

    /// True when the server could not be reached at all (as opposed to a
    /// query it refused): the caller may keep the data and try again later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            // Perhaps an impostor on the path; the real server may be back.
            Self::Untrusted(_) => true,
            Self::Driver(mysql_async::Error::Io(_)) => true,
            Self::Driver(mysql_async::Error::Driver(_)) => true,
            Self::Driver(mysql_async::Error::Server(error)) => {
                // 1040 too many connections, 1053 shutdown in progress,
                // 1205 lock wait timeout, 1927 connection killed (MariaDB),
                // 2006/2013 server gone away / lost connection; in a Galera
                // cluster, 1047 a node outside the primary component ("WSREP
                // has not yet prepared node for application use") and 1213 a
                // transaction that lost certification to another node's.
                matches!(
                    error.code,
                    1040 | 1047 | 1053 | 1205 | 1213 | 1927 | 2006 | 2013
                )
            }
            _ => false,
        }
    }
}

impl DatabaseSettings {
    /// Reads the password, from the secret file if one is configured.
    pub fn resolve_password(&self) -> Result<Option<SecretString>, SettingsError> {
        if let Some(path) = &self.password_file {
            let content = std::fs::read_to_string(path).map_err(|error| {
                SettingsError::invalid("database.password_file", path.display(), error.to_string())
            })?;
            // Secret files are usually written with a trailing newline.
            let password = content.trim_end_matches(['\r', '\n']).to_owned();
            return Ok(Some(SecretString::from(password)));
        }
        Ok(self.password.clone())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Builds a lazy pool: nothing is connected until first use, so a service
    /// can start (and report itself degraded) while the database is down.
    pub fn pool(&self) -> Result<Pool, SettingsError> {
        self.pool_for_database(Some(&self.name))
    }

    /// A pool on the server without selecting a database, for tests and
    /// tools that create databases.
    pub fn server_pool(&self) -> Result<Pool, SettingsError> {
        self.pool_for_database(None)
    }

    fn pool_for_database(&self, database: Option<&str>) -> Result<Pool, SettingsError> {
        let constraints = PoolConstraints::new(0, 10).expect("0 <= 10");
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60))
            .with_reset_connection(false);
        let opts = self
            .connection_opts(database)?
            .wait_timeout(Some(28_800))
            .pool_opts(pool_opts);
        Ok(Pool::new(opts))
    }

    /// How every connection of ours is made: the account, TLS as configured,
    /// `database` selected (or none), and the session in UTC.
    pub fn connection_opts(&self, database: Option<&str>) -> Result<OptsBuilder, SettingsError> {
        let password = self.resolve_password()?;
        Ok(OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .prefer_socket(false)
            .user(Some(self.user.clone()))
            .pass(password.map(|secret| secret.expose_secret().to_owned()))
            .db_name(database.map(str::to_owned))
            .ssl_opts(self.tls())
            // Every DATETIME we read or write is UTC.
            .init(vec!["SET time_zone = '+00:00'"]))
    }

    /// TLS verified against our own CA only: the built-in web roots are
    /// dropped, so a certificate from any public authority is refused too.
    /// The driver checks the chain and that the certificate names `host`
    /// during the handshake, before the password leaves this process.
    fn tls(&self) -> Option<SslOpts> {
        self.ca_file.as_ref().map(|ca_file| {
            SslOpts::default()
                .with_root_certs(vec![ca_file.clone().into()])
                .with_disable_built_in_roots(true)
        })
    }
}

/// Records on the current span the database host that `conn` talks to, so
/// log lines of a database call say which server it was. Callers declare
/// `host = tracing::field::Empty`; the pool does not expose its options, a
/// connection does.
pub fn record_host(conn: &mysql_async::Conn) {
    tracing::Span::current().record("host", conn.opts().ip_or_hostname());
}

/// Runs `future` with the configured bound, so callers see a dead database
/// as an error in seconds.
pub async fn with_timeout<T, F>(limit: Duration, future: F) -> Result<T, DatabaseError>
where
    F: std::future::Future<Output = Result<T, mysql_async::Error>>,
{
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(DatabaseError::from),
        Err(_) => Err(DatabaseError::Timeout(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16) -> DatabaseError {
        DatabaseError::Driver(mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: String::new(),
            state: String::new(),
        }))
    }

    #[test]
    fn a_galera_node_outside_the_primary_component_is_an_outage_not_a_refusal() {
        // The sensor keeps such readings in its spool and retries; the panel
        // shows its outage banner rather than an error.
        assert!(server_error(1047).is_unavailable());
        assert!(server_error(1213).is_unavailable());
        assert!(!server_error(1142).is_unavailable());
        assert!(!server_error(1146).is_unavailable());
    }
}
