//! The flow's GC hold: a PD service GC safepoint (dr-interfaces A5).

use super::*;

pub(super) fn pd_addresses(pd_addrs: &[String]) -> std::result::Result<Vec<String>, BrError> {
    let mut out = Vec::new();
    for raw in pd_addrs {
        let addr = parse_pd_addr(raw).map_err(|message| BrError::Pd {
            addr: raw.clone(),
            message,
        })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err(BrError::Pd {
            addr: String::new(),
            message: "no PD address given".into(),
        });
    }
    Ok(out)
}

/// The PD leader of `pd_addrs`, for a GC hold or release of `service_id`.
pub(super) async fn pd_leader(
    pd_addrs: &[String],
    service_id: &str,
    action: &str,
) -> Result<PdLeader> {
    let addrs = pd_addresses(pd_addrs)?;
    let refuse = |message: String| BrError::Pd {
        addr: addrs.join(","),
        message,
    };
    if service_id.is_empty() {
        return Err(refuse("the service ID is empty".into()).into());
    }
    if service_id == "gc_worker" {
        return Err(refuse("\"gc_worker\" is GC's own service ID on PD".into()).into());
    }
    PdLeader::connect(&addrs).await.map_err(|e| {
        refuse(format!(
            "cannot {action} service GC safepoint {service_id}: {e}"
        ))
        .into()
    })
}

/// Hold GC at `safe_point` (a TSO taken before the backup) with the PD service safepoint
/// `service_id`, for `ttl_secs` ([`DEFAULT_GC_HOLD_TTL_SECS`] in the flow); calling it again
/// renews the hold. It is not refreshed in the background: it outlives this process, and
/// replaces the DR guide's cluster-wide `SET GLOBAL tidb_gc_enable = FALSE` (A5). PD answering
/// a minimum safepoint above `safe_point` means GC has passed it and nothing was held:
/// [`BrError::GcPassed`].
pub async fn hold_gc(
    pd_addrs: &[String],
    service_id: &str,
    safe_point: u64,
    ttl_secs: i64,
) -> Result<GcHold> {
    if ttl_secs < 1 {
        return Err(BrError::Pd {
            addr: pd_addrs.join(","),
            message: format!(
                "a GC hold needs a TTL of at least 1 s (got {ttl_secs}; 0 or less removes it)"
            ),
        }
        .into());
    }
    if safe_point == 0 {
        return Err(BrError::Pd {
            addr: pd_addrs.join(","),
            message: "a GC hold needs a positive TSO".into(),
        }
        .into());
    }
    let mut leader = pd_leader(pd_addrs, service_id, "set").await?;
    let answer = leader
        .update_service_gc_safe_point(service_id, ttl_secs, safe_point)
        .await
        .map_err(|e| BrError::Pd {
            addr: leader.addr.clone(),
            message: format!("cannot set service GC safepoint {service_id}: {e}"),
        })?;
    if answer.min_safe_point > safe_point {
        return Err(BrError::GcPassed {
            addr: leader.addr.clone(),
            service_id: service_id.into(),
            safe_point: Tso(safe_point),
            gc_safe_point: Tso(answer.min_safe_point),
            holder: answer.min_service_id,
        }
        .into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let hold = GcHold {
        service_id: service_id.into(),
        safe_point,
        expires_at_unix: now.saturating_add(ttl_secs),
    };
    tracing::info!(
        "GC held at {} by service safepoint {service_id} on PD {} (TTL {ttl_secs} s)",
        Tso(safe_point),
        leader.addr
    );
    Ok(hold)
}

/// Remove the GC hold `service_id` (TTL 0: PD's documented removal). Removing a hold that
/// does not exist succeeds.
pub async fn release_gc(pd_addrs: &[String], service_id: &str) -> Result<()> {
    let mut leader = pd_leader(pd_addrs, service_id, "remove").await?;
    leader
        .update_service_gc_safe_point(service_id, 0, 0)
        .await
        .map_err(|e| BrError::Pd {
            addr: leader.addr.clone(),
            message: format!("cannot remove service GC safepoint {service_id}: {e}"),
        })?;
    tracing::info!("GC hold {service_id} removed from PD {}", leader.addr);
    Ok(())
}
