//! Running the statements: one long-lived connection per job, KILL on interrupt.

use super::*;

pub(super) type Rows = Vec<Vec<Option<Vec<u8>>>>;

pub(super) fn addr_of(opts: &mysql_async::Opts) -> String {
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
}

/// A driver error as a [`BrError`], with the secrets of `uri` masked in what the server said.
pub(super) fn statement_error(
    statement: &str,
    addr: &str,
    sql: &str,
    uri: &str,
    e: &mysql_async::Error,
) -> BrError {
    match e {
        mysql_async::Error::Server(s) => BrError::Server {
            statement: statement.into(),
            addr: addr.into(),
            sql: sql.into(),
            server: Box::new(ServerError {
                code: s.code,
                state: s.state.clone(),
                message: redact_secrets(&s.message, uri),
            }),
        },
        other => BrError::ConnectionLost {
            statement: statement.into(),
            addr: addr.into(),
            sql: sql.into(),
            message: redact_secrets(&crate::db::describe_mysql_error(other), uri),
        },
    }
}

pub(super) async fn connect(
    opts: &mysql_async::Opts,
) -> std::result::Result<mysql_async::Conn, BrError> {
    let addr = addr_of(opts);
    match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(opts.clone())).await {
        Err(_) => Err(BrError::Connect {
            addr,
            message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            server: None,
        }),
        Ok(Err(e)) => Err(BrError::Connect {
            addr,
            message: crate::db::describe_mysql_error(&e),
            server: match &e {
                mysql_async::Error::Server(s) => Some(Box::new(s.into())),
                _ => None,
            },
        }),
        Ok(Ok(conn)) => Ok(conn),
    }
}

/// Run a query and collect its column names and rows (text-protocol values).
pub(super) async fn query_named(
    conn: &mut mysql_async::Conn,
    sql: &str,
) -> std::result::Result<(Vec<String>, Rows), mysql_async::Error> {
    let mut result = conn.query_iter(sql).await?;
    let columns = result
        .columns()
        .map(|cols| cols.iter().map(|c| c.name_str().into_owned()).collect())
        .unwrap_or_default();
    let rows: Vec<mysql_async::Row> = result.collect().await?;
    result.drop_result().await?;
    let rows = rows
        .into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(b),
                    other => Some(other.as_sql(true).into_bytes()),
                })
                .collect()
        })
        .collect();
    Ok((columns, rows))
}

/// The connection's ID as `KILL` expects it (see the module docs for why not the
/// handshake's).
pub(super) async fn connection_id(conn: &mut mysql_async::Conn, addr: &str) -> Result<u64> {
    const SQL: &str = "SELECT CONNECTION_ID()";
    let (columns, rows) = query_named(conn, SQL)
        .await
        .map_err(|e| statement_error(SQL, addr, SQL, "", &e))?;
    let row = rows.first().ok_or_else(|| BrError::EmptyResult {
        statement: SQL.into(),
        addr: addr.into(),
    })?;
    let name = columns.first().cloned().unwrap_or_default();
    let r = Named::new("SELECT CONNECTION_ID()", &columns, row)?;
    Ok(r.number(&name, "an unsigned integer")?)
}

/// Run BACKUP or RESTORE on a new connection (see the module docs): the result's columns
/// and rows (at least one), and the connection, still open.
pub(super) async fn run_brie(
    kind: BrKind,
    opts: &mysql_async::Opts,
    schemas: &[String],
    uri: &str,
    br: &BrOptions,
    interrupt: &Interrupt,
) -> Result<(Vec<String>, Rows, mysql_async::Conn)> {
    br.validate()?;
    let addr = addr_of(opts);
    let statement = kind.keyword();
    let sql = brie_sql(kind, schemas, uri, br);
    let shown = brie_sql(kind, schemas, &redact_uri(uri), br);
    if let Some(signal) = interrupt.fired() {
        return Err(signal.into());
    }
    let mut conn = interrupt.interruptible(connect(opts)).await??;
    for setup in SESSION_SETUP {
        conn.query_drop(setup)
            .await
            .map_err(|e| statement_error("session setup", &addr, setup, "", &e))?;
    }
    let id = connection_id(&mut conn, &addr).await?;
    if !br.checksum {
        tracing::warn!(
            "{statement} with CHECKSUM = FALSE: the data is not verified, and a backup without \
             checksums disables the restore's check"
        );
    }
    tracing::info!("{statement} on {addr} (connection {id}), blocks until the job ends: {shown}");
    let started = std::time::Instant::now();
    let answer = interrupt.interruptible(query_named(&mut conn, &sql)).await;
    let (columns, rows) = match answer {
        Err(signal) => {
            kill(opts, &addr, id, statement).await;
            drop(conn);
            return Err(signal.into());
        }
        Ok(Err(e)) => return Err(statement_error(statement, &addr, &shown, uri, &e).into()),
        Ok(Ok(answer)) => answer,
    };
    if rows.is_empty() {
        return Err(BrError::EmptyResult {
            statement: statement.into(),
            addr,
        }
        .into());
    }
    tracing::info!(
        "{statement} on {addr} finished in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok((columns, rows, conn))
}

/// Cancel the job on connection `id` from a second connection. Failures are logged, not
/// returned: the caller is stopping either way, and says so.
pub(super) async fn kill(opts: &mysql_async::Opts, addr: &str, id: u64, statement: &str) {
    let sql = kill_sql(id);
    let attempt = async {
        let mut conn = connect(opts).await?;
        conn.query_drop(&sql)
            .await
            .map_err(|e| statement_error("KILL", addr, &sql, "", &e))?;
        let _ = conn.disconnect().await;
        Ok::<(), BrError>(())
    };
    match tokio::time::timeout(KILL_TIMEOUT, attempt).await {
        Ok(Ok(())) => tracing::warn!(
            "{statement} on {addr} interrupted: sent {sql}; TiDB cancels the job (SHOW BACKUPS \
             shows it as canceled)"
        ),
        Ok(Err(e)) => tracing::error!(
            "{statement} on {addr} interrupted, but the job could not be cancelled and may \
             still run: {e}; cancel it with {sql} on that server"
        ),
        Err(_) => tracing::error!(
            "{statement} on {addr} interrupted, but {sql} got no answer within {}s: the job may \
             still run",
            KILL_TIMEOUT.as_secs()
        ),
    }
}

/// Back up `schemas` (all non-system schemas when empty) to `uri_with_secrets` and return
/// BACKUP's answer; blocks until the job ends. On `interrupt`, the job is cancelled with
/// `KILL TIDB QUERY` from a second connection and the result is
/// [`Error::Interrupted`](crate::Error::Interrupted).
pub async fn backup(
    opts: &mysql_async::Opts,
    schemas: &[String],
    uri_with_secrets: &str,
    br: &BrOptions,
    interrupt: &Interrupt,
) -> Result<BackupResult> {
    let (columns, rows, conn) = run_brie(
        BrKind::Backup,
        opts,
        schemas,
        uri_with_secrets,
        br,
        interrupt,
    )
    .await?;
    let _ = conn.disconnect().await;
    let result = parse_backup_result(&columns, &rows[0])?;
    tracing::info!(
        "backup to {} done: {} bytes, BackupTS {}",
        result.destination,
        result.size,
        Tso(result.backup_ts)
    );
    Ok(result)
}

/// Restore `schemas` (all in the archive when empty) from `uri_with_secrets`, as
/// [`backup`], then take the verification point with [`fresh_tso`] on the same connection
/// ([`RestoreResult::verification_ts`]).
pub async fn restore(
    opts: &mysql_async::Opts,
    schemas: &[String],
    uri_with_secrets: &str,
    br: &BrOptions,
    interrupt: &Interrupt,
) -> Result<RestoreResult> {
    let (columns, rows, mut conn) = run_brie(
        BrKind::Restore,
        opts,
        schemas,
        uri_with_secrets,
        br,
        interrupt,
    )
    .await?;
    let mut result = parse_restore_result(&columns, &rows[0])?;
    match fresh_tso(&mut conn).await {
        Ok(ts) => result.verification_ts = Some(ts),
        Err(e) => tracing::warn!(
            "restore done, but no verification TSO could be taken after it ({e}); take one \
             before comparing"
        ),
    }
    let _ = conn.disconnect().await;
    tracing::info!(
        "restore from {} done: {} bytes, archive BackupTS {}, restore TS {:?}",
        result.destination,
        result.size,
        result.backup_ts,
        result.cluster_ts
    );
    Ok(result)
}

/// The BR jobs this TiDB server knows (`SHOW BACKUPS`; needs `SUPER`).
pub async fn show_backups(conn: &mut mysql_async::Conn) -> Result<Vec<BrJob>> {
    const SQL: &str = "SHOW BACKUPS";
    let addr = addr_of(conn.opts());
    let (columns, rows) = query_named(conn, SQL)
        .await
        .map_err(|e| statement_error(SQL, &addr, SQL, "", &e))?;
    Ok(parse_show_backups(&columns, &rows)?)
}

/// A fresh TSO of the server's cluster: `BEGIN`, `SELECT @@tidb_current_ts` (the
/// transaction's start TS; dr-interfaces A4.2), `ROLLBACK` (sent even when the read fails).
/// 0 (outside a transaction, or not TiDB) is an error.
pub async fn fresh_tso(conn: &mut mysql_async::Conn) -> Result<u64> {
    const SQL: &str = "SELECT @@tidb_current_ts";
    let addr = addr_of(conn.opts());
    let failed = |sql: &str, e: mysql_async::Error| statement_error(sql, &addr, sql, "", &e);
    conn.query_drop("BEGIN")
        .await
        .map_err(|e| failed("BEGIN", e))?;
    let read = query_named(conn, SQL).await;
    let rollback = conn.query_drop("ROLLBACK").await;
    let (columns, rows) = read.map_err(|e| failed(SQL, e))?;
    rollback.map_err(|e| failed("ROLLBACK", e))?;
    let row = rows.first().ok_or_else(|| BrError::EmptyResult {
        statement: SQL.into(),
        addr: addr.clone(),
    })?;
    let name = columns.first().cloned().unwrap_or_default();
    let r = Named::new(SQL, &columns, row)?;
    let ts: u64 = r.number(&name, "an unsigned integer (a TSO)")?;
    if ts == 0 {
        return Err(r
            .bad(
                &name,
                Some("0"),
                "no transaction TSO: not a TiDB server, or BEGIN did not start a transaction",
            )
            .into());
    }
    Ok(ts)
}
