//! `dr failover` on TiDB (dr-interfaces A8-A10): the primary cluster is lost; the
//! changefeed's redo log, in redo-storage, holds what the secondary had not received.
//!
//! 1. Checks, nothing changed: the flow's changefeed, its redo prefix holding meta files
//!    (msgpack `{checkpointTs, resolvedTs}`, A8.2; the largest of each, as `cdc redo apply`
//!    takes them, A8.4), resolved ≥ checkpoint, the secondary answering, the `cdc` tool.
//! 2. The changefeed is **paused, never removed** (removing it deletes its redo log, A8.2),
//!    when TiCDC still answers; otherwise a note says TiCDC must be stopped.
//! 3. `cdc redo apply --storage=<redo> --tmp-dir=<dir> --sink-uri=<secondary>`; success is
//!    exit 0 **and** the line `Apply redo log successfully`. S3 credentials go through the
//!    environment, not the command line.
//! 4. Gate 3 (a): the secondary now holds the upstream at resolved-ts R (A9): R must be at
//!    or after the redo's checkpoint and the newest syncpoint the secondary recorded. (b):
//!    when the upstream still answers, the checker compares it at `tidb_snapshot = R` with
//!    the secondary; when it is gone, not compared (said so). (c) the recovery point is R's
//!    physical time. The ts-map pair (R, a fresh secondary TSO) is the new anchor (A9.3).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::failover::{FailoverReport, PositionGate, FAILOVER_DIR};
use super::flow::{now_rfc3339, Flow, Point, StepName, StepRecord, StepStatus};
use super::ticdc::{CdcClient, FeedState};
use super::{DrContext, DrError};
use crate::db::{cell_u64, Source};
use crate::error::{Error, Result};
use crate::storage::{ObjectStore, StorageUri};

/// The line `cdc redo apply` prints when it has applied everything (A8.4).
pub const APPLY_SUCCESS: &str = "Apply redo log successfully";

/// How long the old primary is given to answer for gate 3 (b).
const UPSTREAM_PROBE: Duration = Duration::from_secs(3);

/// One redo meta file's content (A8.2; tinylib/msgp field names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RedoMeta {
    #[serde(rename = "checkpointTs")]
    pub checkpoint_ts: u64,
    #[serde(rename = "resolvedTs")]
    pub resolved_ts: u64,
}

/// Parse a meta file's bytes (a msgpack map of two unsigned integers).
pub fn parse_meta(bytes: &[u8]) -> std::result::Result<RedoMeta, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("not a redo meta (msgpack) file: {e}"))
}

/// What `cdc redo apply` will use: the largest checkpoint and resolved TS over every meta
/// file (A8.4), refused where it would fail or panic.
pub fn resolve_meta(metas: &[(String, RedoMeta)], location: &str) -> Result<RedoMeta> {
    let (Some(checkpoint_ts), Some(resolved_ts)) = (
        metas.iter().map(|(_, m)| m.checkpoint_ts).max(),
        metas.iter().map(|(_, m)| m.resolved_ts).max(),
    ) else {
        return Err(DrError::Precondition(format!(
            "no redo meta file (*.meta) in {location}: the changefeed wrote no redo log there, \
             or it was removed (removing a changefeed deletes its redo); nothing was applied"
        ))
        .into());
    };
    if resolved_ts < checkpoint_ts {
        return Err(DrError::Precondition(format!(
            "the redo meta in {location} has resolved-ts {resolved_ts} before checkpoint-ts \
             {checkpoint_ts}; `cdc redo apply` would refuse it; nothing was applied"
        ))
        .into());
    }
    Ok(RedoMeta {
        checkpoint_ts,
        resolved_ts,
    })
}

/// The meta files under the changefeed's redo prefix, parsed.
async fn read_metas(store: &dyn ObjectStore) -> Result<Vec<(String, RedoMeta)>> {
    let mut out = Vec::new();
    for obj in store.list("").await? {
        if !obj.key.ends_with(".meta") || obj.key.contains('/') {
            continue;
        }
        let Some(bytes) = store.get(&obj.key).await? else {
            continue; // replaced by a newer one meanwhile (the owner rewrites it)
        };
        let meta = parse_meta(&bytes).map_err(|e| {
            DrError::Precondition(format!("redo meta {}: {e}; nothing was applied", obj.key))
        })?;
        out.push((obj.key, meta));
    }
    Ok(out)
}

/// The flow's changefeed and its redo location.
fn changefeed(ctx: &DrContext, state: &super::flow::FlowState) -> Result<(String, StorageUri)> {
    let refuse = |m: String| Error::from(DrError::Precondition(m));
    let step = state
        .step(StepName::Replicate)
        .filter(|r| r.status == StepStatus::Done)
        .ok_or_else(|| {
            refuse("replication is not set up in this flow: there is no redo to apply".into())
        })?;
    let id = step.changefeed.clone().ok_or_else(|| {
        refuse("the flow's replication records no changefeed: it was not set up on TiDB".into())
    })?;
    let root = ctx.dr.redo_storage.as_deref().ok_or_else(|| {
        refuse("[dr] has no redo-storage: the changefeed's redo log is not known".into())
    })?;
    Ok((id.clone(), StorageUri::parse(root)?.join(&id)))
}

/// What `dr failover --dry-run` prints on TiDB: the checks run (redo meta read), nothing
/// sent to TiCDC, nothing applied.
pub async fn plan(ctx: &DrContext) -> Result<Vec<String>> {
    let store = ctx.store().await?;
    let (state, _) = Flow::peek(store.as_ref()).await?;
    let (id, redo) = changefeed(ctx, &state)?;
    let redo_store = crate::storage::open(&redo).await?;
    let meta = resolve_meta(&read_metas(redo_store.as_ref()).await?, &redo.redacted())?;
    let cdc = cdc_binary(ctx)?;
    let sink = super::tidb_steps::secondary_sink(ctx)?;
    Ok(vec![
        format!(
            "would pause changefeed {id} (never remove it: that deletes its redo) when TiCDC \
             answers"
        ),
        format!(
            "would run {cdc} redo apply --storage={} --tmp-dir=<temp> --sink-uri={}: \
             checkpoint-ts {}, resolved-ts {}",
            redo.redacted(),
            sink.redacted(),
            meta.checkpoint_ts,
            meta.resolved_ts
        ),
        "then gate 3: resolved-ts at or after the checkpoint and the newest syncpoint; the \
         upstream at resolved-ts compared with the secondary when it still answers"
            .into(),
    ])
}

/// Run `dr failover` on TiDB under the flow's lock.
pub async fn run(
    ctx: &DrContext,
    secondary: Source,
    opts: &super::failover::FailoverOptions,
) -> Result<FailoverReport> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let store = ctx.store().await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr failover",
        async |flow: &mut Flow| {
            super::failover::refuse_done(flow, opts)?;
            let (id, redo) = changefeed(ctx, &flow.state)?;
            let redo_store = crate::storage::open(&redo).await?;
            let meta = resolve_meta(&read_metas(redo_store.as_ref()).await?, &redo.redacted())?;
            let cdc = cdc_binary(ctx)?;
            let mut record = StepRecord::started_now();
            record.changefeed = Some(id.clone());
            let work = apply_and_gate(
                ctx,
                (&id, &redo, meta),
                &secondary,
                &cdc,
                started,
                started_at.clone(),
            );
            super::failover::record_step(ctx, flow, record, work).await
        },
    )
    .await
}

/// The `cdc` tool: `[dr] cdc-binary`, else `cdc` on PATH.
fn cdc_binary(ctx: &DrContext) -> Result<String> {
    let name = ctx.dr.cdc_binary.clone().unwrap_or_else(|| "cdc".into());
    let found = if name.contains('/') {
        Path::new(&name).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&name).is_file()))
    };
    if !found {
        return Err(DrError::ToolMissing {
            tool: name,
            package: "TiCDC's cdc binary (or set [dr] cdc-binary)".into(),
            cause: "not found".into(),
        }
        .into());
    }
    Ok(name)
}

/// Steps 2 to 4.
async fn apply_and_gate(
    ctx: &DrContext,
    (id, redo, meta): (&str, &StorageUri, RedoMeta),
    secondary: &Source,
    cdc: &str,
    started: Instant,
    started_at: String,
) -> Result<(FailoverReport, Point)> {
    let mut notes = Vec::new();
    pause_changefeed(ctx, id, &mut notes).await;
    redo_apply(ctx, redo, cdc).await?;
    let writable_after = started.elapsed();
    tracing::info!(
        resolved_ts = meta.resolved_ts,
        "dr failover: cdc redo apply succeeded"
    );
    let mut conn = secondary.connect().await?;
    let fresh = super::tidb::fresh_tso(conn.inner()).await?;
    let syncpoint = newest_syncpoint(&mut conn, id).await;
    conn.close().await;
    if syncpoint.is_none() {
        notes.push(format!(
            "no syncpoint of changefeed {id} found on the secondary: gate 3 (a) compares \
             resolved-ts with the redo's checkpoint only"
        ));
    }
    let floor = syncpoint.unwrap_or(0).max(meta.checkpoint_ts);
    let position_equal = meta.resolved_ts >= floor;
    let (gate_data, gate_data_result) = data_gate(ctx, meta.resolved_ts).await;
    let recovery_unix = meta.resolved_ts >> 18; // physical milliseconds (A1.3)
    let report = FailoverReport {
        secondary: secondary.name().to_string(),
        started: started_at,
        start_position: format!("checkpoint-ts {}", meta.checkpoint_ts),
        archive_end: format!("resolved-ts {}", meta.resolved_ts),
        applied_segments: 0,
        applied_transactions: 0,
        position: format!("resolved-ts {}", meta.resolved_ts),
        last_recovered: Some(format!("resolved-ts {}", meta.resolved_ts)),
        recovery_point: Some(super::failover::unix_rfc3339(recovery_unix / 1000)),
        recovery_point_unix: Some(recovery_unix / 1000),
        primary_position: None,
        lost_transactions: None,
        writable_after_ms: Some(writable_after.as_millis() as u64),
        source_binlog: None,
        truncated: None,
        gate_position: PositionGate {
            result: if position_equal { "equal" } else { "different" }.into(),
            expected: format!(
                "at or after {floor} (the redo's checkpoint-ts {}{})",
                meta.checkpoint_ts,
                syncpoint
                    .map(|s| format!(", the newest syncpoint {s}"))
                    .unwrap_or_default()
            ),
            actual: format!("resolved-ts {}", meta.resolved_ts),
        },
        gate_counters: "not checked on TiDB: the redo's explicit ids move TiDB's allocator \
                        past them"
            .into(),
        gate_data,
        gate_data_result,
        notes: {
            notes.push(format!(
                "ts-map: primary {} = secondary {fresh} (the anchor of the next backup and \
                 changefeed); the changefeed {id} is kept (paused) until the reseed: removing \
                 it deletes its redo",
                meta.resolved_ts
            ));
            notes
        },
    };
    Ok((report, Point::Tso { tso: fresh }))
}

/// Pause the changefeed when TiCDC answers; never remove it.
async fn pause_changefeed(ctx: &DrContext, id: &str, notes: &mut Vec<String>) {
    let Some(addr) = ctx.primary_cdc_addr() else {
        notes.push("no cdc-addr for the primary: the changefeed was not paused".into());
        return;
    };
    let paused = async {
        let client = CdcClient::new(&addr)?;
        match client.get(id).await? {
            Some(info) if info.state != FeedState::Normal && info.state != FeedState::Warning => {
                Ok(false)
            }
            Some(_) => client.pause(id).await.map(|()| true),
            None => Ok(false),
        }
    }
    .await;
    match paused {
        Ok(true) => notes.push(format!(
            "changefeed {id} paused (not removed: its redo stays)"
        )),
        Ok(false) => notes.push(format!("changefeed {id} was not running; left as it is")),
        Err(e) => notes.push(format!(
            "TiCDC did not answer ({e}): the changefeed was not paused; stop every TiCDC \
             process of the old cluster"
        )),
    }
}

/// `cdc redo apply`, its success line required.
async fn redo_apply(ctx: &DrContext, redo: &StorageUri, cdc: &str) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("syncgate-redo-apply-")
        .tempdir()?;
    // `--tmp-dir` is deleted recursively at start (A8.4): give it a directory of its own.
    let tmp_dir = tmp.path().join("sort");
    let sink = super::tidb_steps::secondary_sink(ctx)?;
    let mut cmd = tokio::process::Command::new(cdc);
    cmd.arg("redo")
        .arg("apply")
        .arg(format!("--storage={}", redo.redacted()))
        .arg(format!("--tmp-dir={}", tmp_dir.display()))
        .arg(format!("--sink-uri={}", sink.expose_secret()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some((key, secret, token)) = redo.credentials() {
        cmd.env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret);
        if let Some(t) = token {
            cmd.env("AWS_SESSION_TOKEN", t);
        }
    }
    tracing::info!(
        storage = %redo.redacted(),
        sink = %sink.redacted(),
        "dr failover: cdc redo apply"
    );
    let out = cmd.output().await.map_err(|e| DrError::ToolMissing {
        tool: cdc.to_string(),
        package: "TiCDC's cdc binary (or set [dr] cdc-binary)".into(),
        cause: e.to_string(),
    })?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let masked = text.replace(sink.expose_secret(), &sink.redacted());
    if out.status.success() && text.contains(APPLY_SUCCESS) {
        return Ok(());
    }
    let tail: Vec<&str> = masked.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(5)..].join(" | ");
    Err(DrError::Tool {
        tool: "cdc redo apply".into(),
        status: if out.status.success() {
            format!("exit 0 without the line '{APPLY_SUCCESS}'")
        } else {
            out.status.to_string()
        },
        stderr: tail,
    }
    .into())
}

/// The newest syncpoint's primary TS of changefeed `id` recorded on the secondary, if any.
async fn newest_syncpoint(conn: &mut crate::db::Conn, id: &str) -> Option<u64> {
    let sql = format!(
        "SELECT MAX(primary_ts) FROM tidb_cdc.syncpoint_v1 WHERE changefeed = {}",
        crate::sql::quote_str(&format!("default/{id}"))
    );
    conn.first(&sql)
        .await
        .ok()
        .flatten()
        .and_then(|r| cell_u64(&r, 0))
}

/// Gate 3 (b) on TiDB (A9.1): when the upstream still answers, the checker compares it at
/// `tidb_snapshot = resolved_ts` with the secondary.
async fn data_gate(ctx: &DrContext, resolved_ts: u64) -> (String, Option<String>) {
    let probe = tokio::time::timeout(UPSTREAM_PROBE, Source::open(ctx.primary.clone())).await;
    if !matches!(probe, Ok(Ok(_))) {
        return (
            format!(
                "not compared: the upstream does not answer (its data at resolved-ts \
                 {resolved_ts} can only be compared while it is readable)"
            ),
            None,
        );
    }
    let checked = async {
        let mut job = ctx.gate_job(&format!("{FAILOVER_DIR}/data"))?;
        job.upstream.snapshot = crate::snapshot::Snapshot::parse(&resolved_ts.to_string())?;
        job.downstream.snapshot = crate::snapshot::Snapshot::Live;
        crate::check::run_check(job, crate::report::progress::Progress::hidden()).await
    }
    .await;
    match checked {
        Ok(r) => {
            let result = r.result.as_str().replace("repaired", "equal");
            let _ = crate::report::write_summary(&r, &ctx.step_dir(FAILOVER_DIR).join("data"));
            (
                format!(
                    "{result}: the upstream at resolved-ts {resolved_ts} against the \
                     secondary, {} table(s)",
                    r.tables.len()
                ),
                Some(result),
            )
        }
        Err(e) => (format!("error: {e}"), Some("error".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes tinylib/msgp writes for `{checkpointTs, resolvedTs}` (A8.2): a fixmap of
    /// two, fixstr keys, uint64 values (0xcf).
    fn meta_bytes(checkpoint: u64, resolved: u64) -> Vec<u8> {
        let mut b = vec![0x82, 0xac];
        b.extend_from_slice(b"checkpointTs");
        b.push(0xcf);
        b.extend_from_slice(&checkpoint.to_be_bytes());
        b.push(0xaa);
        b.extend_from_slice(b"resolvedTs");
        b.push(0xcf);
        b.extend_from_slice(&resolved.to_be_bytes());
        b
    }

    #[test]
    fn meta_is_read_from_the_bytes_ticdc_writes() {
        let m = parse_meta(&meta_bytes(
            450_000_000_000_000_001,
            450_000_000_000_000_900,
        ))
        .unwrap();
        assert_eq!(m.checkpoint_ts, 450_000_000_000_000_001);
        assert_eq!(m.resolved_ts, 450_000_000_000_000_900);
        // Small values in msgp's shorter encodings parse too.
        let small = [
            &[0x82, 0xac][..],
            b"checkpointTs",
            &[0x05, 0xaa],
            b"resolvedTs",
            &[0xcc, 0xc8],
        ]
        .concat();
        assert_eq!(
            parse_meta(&small).unwrap(),
            RedoMeta {
                checkpoint_ts: 5,
                resolved_ts: 200
            }
        );
        assert!(parse_meta(b"not msgpack").is_err());
        assert!(parse_meta(&meta_bytes(1, 2)[..20]).is_err(), "truncated");
    }

    #[test]
    fn the_largest_of_each_ts_is_used_and_resolved_before_checkpoint_is_refused() {
        let m = |c, r| {
            (
                "x.meta".to_string(),
                RedoMeta {
                    checkpoint_ts: c,
                    resolved_ts: r,
                },
            )
        };
        let got = resolve_meta(&[m(10, 50), m(30, 40)], "loc").unwrap();
        assert_eq!((got.checkpoint_ts, got.resolved_ts), (30, 50));
        let err = resolve_meta(&[], "loc").unwrap_err().to_string();
        assert!(err.contains("no redo meta file"), "{err}");
        let err = resolve_meta(&[m(60, 50)], "loc").unwrap_err().to_string();
        assert!(err.contains("before checkpoint-ts"), "{err}");
    }
}
