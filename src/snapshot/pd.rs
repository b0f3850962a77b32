//! A minimal client for PD's gRPC API: just enough to hold a *service GC safepoint* for a
//! TiDB snapshot ([`super::tidb::GcKeeper`] drives it).
//!
//! **Built against PD's documented contract, not a live PD.** PD cannot run where syncgate is
//! developed; this follows `pdpb.proto` of pingcap/kvproto (service `pdpb.PD`, commit
//! 007154d367a28e99981731e620a3f1a0c9716bca) and PD's server code (tikv/pd
//! `server/grpc_service.go`, `pkg/gc/safepoint.go`, `pkg/gc/gc_state_manager.go`), and is
//! covered by contract tests against a mock PD gRPC server (`tests/it/tidb_contract/`).
//!
//! # What is spoken
//!
//! gRPC over plain HTTP/2 (h2c, `http://` only; PD with TLS is not supported), unary calls
//! sent with `tonic::client::Grpc` and `tonic_prost::ProstCodec`; the messages below are
//! written by hand with the field numbers of `pdpb.proto` (no build script, no `protoc`).
//! Fields syncgate does not need are left out: protobuf decoders skip unknown fields, and an
//! absent field is its zero value, so the subset is wire-compatible.
//!
//! 1. `/pdpb.PD/GetMembers` (`GetMembersRequest{header}` → `GetMembersResponse{header,
//!    members, leader}`) on the configured address. The proto says "It does not require the
//!    cluster_id in request matchs the id of this cluster", so it is the call that *learns*
//!    the cluster ID (`header.cluster_id` of the answer) and the leader's client URLs.
//! 2. `/pdpb.PD/UpdateServiceGCSafePoint` (`{header{cluster_id}, service_id, TTL,
//!    safe_point}` → `{header, service_id, TTL, min_safe_point}`) on the **leader**: PD's
//!    handler first runs `validateRequest`, which refuses a follower ("not leader") and a
//!    request whose `header.cluster_id` is not the cluster's ("mismatch cluster id").
//!
//! Why gRPC `GetMembers` rather than PD's HTTP `GET /pd/api/v1/cluster` for the cluster ID:
//! neither is in `shared/reference/dr-interfaces.md`, but the proto documents `GetMembers` as
//! the call that needs no cluster ID, and its answer also names the leader, which the update
//! must be sent to. One protocol, one connection, no guess about an HTTP shape.
//!
//! # Semantics of `UpdateServiceGCSafePoint` (PD server code)
//!
//! - `TTL > 0`: the service safepoint `service_id` is set to `safe_point`, expiring `TTL`
//!   seconds from now, **unless `safe_point` is below the current minimum** (GC has already
//!   passed it): then nothing is stored. Either way the answer's `min_safe_point` is the
//!   minimum over all services (older PDs: `LoadMinServiceGCSafePoint`; PDs with the
//!   `GCStateManager`: the txn safe point, which is at or below every GC barrier, and a
//!   barrier behind it is refused). So `min_safe_point > safe_point` means "not
//!   registered, the data at `safe_point` may already be collected".
//! - `TTL ≤ 0`: the service safepoint is removed (`if request.TTL <= 0 {
//!   RemoveServiceGCSafePoint(...) }` in `grpc_service.go`; newer PDs call
//!   `DeleteGCBarrier`; the proto documents the same for the V2 call: "pass in a ttl < 0 to
//!   remove target safe point"). syncgate sends `TTL = 0` to remove.
//! - The answer's `service_id`/`TTL` describe the service holding the minimum, not ours.

use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

/// gRPC path of `PD.GetMembers`.
pub const GET_MEMBERS_PATH: &str = "/pdpb.PD/GetMembers";
/// gRPC path of `PD.UpdateServiceGCSafePoint`.
pub const UPDATE_SERVICE_GC_SAFE_POINT_PATH: &str = "/pdpb.PD/UpdateServiceGCSafePoint";

/// How long connecting to one PD address may take.
pub const PD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one PD call may take.
pub const PD_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Messages (pdpb.proto; field numbers as there)
// ---------------------------------------------------------------------------------------

/// `pdpb.RequestHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestHeader {
    /// `uint64 cluster_id = 1`: the cluster the request is for.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// `uint64 sender_id = 2`: a PD member ID; 0 for clients.
    #[prost(uint64, tag = "2")]
    pub sender_id: u64,
}

/// `pdpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    /// `uint64 cluster_id = 1`: the cluster that answered.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// `Error error = 2`.
    #[prost(message, optional, tag = "2")]
    pub error: Option<PdError>,
}

/// `pdpb.Error`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PdError {
    /// `ErrorType type = 1` (an enum; 0 = OK), see [`error_type_name`].
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// `string message = 2`.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `pdpb.Member` (the fields syncgate reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Member {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `uint64 member_id = 2`.
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    /// `repeated string peer_urls = 3`.
    #[prost(string, repeated, tag = "3")]
    pub peer_urls: Vec<String>,
    /// `repeated string client_urls = 4`: where clients reach this member.
    #[prost(string, repeated, tag = "4")]
    pub client_urls: Vec<String>,
}

/// `pdpb.GetMembersRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMembersRequest {
    /// `RequestHeader header = 1`.
    #[prost(message, optional, tag = "1")]
    pub header: Option<RequestHeader>,
}

/// `pdpb.GetMembersResponse` (without `tso_allocator_leaders = 5`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMembersResponse {
    /// `ResponseHeader header = 1`.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// `repeated Member members = 2`.
    #[prost(message, repeated, tag = "2")]
    pub members: Vec<Member>,
    /// `Member leader = 3`.
    #[prost(message, optional, tag = "3")]
    pub leader: Option<Member>,
    /// `Member etcd_leader = 4`.
    #[prost(message, optional, tag = "4")]
    pub etcd_leader: Option<Member>,
}

/// `pdpb.UpdateServiceGCSafePointRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateServiceGcSafePointRequest {
    /// `RequestHeader header = 1`.
    #[prost(message, optional, tag = "1")]
    pub header: Option<RequestHeader>,
    /// `bytes service_id = 2`.
    #[prost(bytes = "vec", tag = "2")]
    pub service_id: Vec<u8>,
    /// `int64 TTL = 3`: seconds; ≤ 0 removes the service safepoint.
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    /// `uint64 safe_point = 4`: a TSO.
    #[prost(uint64, tag = "4")]
    pub safe_point: u64,
}

/// `pdpb.UpdateServiceGCSafePointResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateServiceGcSafePointResponse {
    /// `ResponseHeader header = 1`.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// `bytes service_id = 2`: the service holding the minimum.
    #[prost(bytes = "vec", tag = "2")]
    pub service_id: Vec<u8>,
    /// `int64 TTL = 3`: that service's remaining TTL.
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    /// `uint64 min_safe_point = 4`: the minimum service safepoint after the update.
    #[prost(uint64, tag = "4")]
    pub min_safe_point: u64,
}

/// The name of a `pdpb.ErrorType` value.
pub fn error_type_name(t: i32) -> &'static str {
    match t {
        0 => "OK",
        1 => "UNKNOWN",
        2 => "NOT_BOOTSTRAPPED",
        3 => "STORE_TOMBSTONE",
        4 => "ALREADY_BOOTSTRAPPED",
        5 => "INCOMPATIBLE_VERSION",
        6 => "REGION_NOT_FOUND",
        7 => "GLOBAL_CONFIG_NOT_FOUND",
        8 => "DUPLICATED_ENTRY",
        9 => "ENTRY_NOT_FOUND",
        10 => "INVALID_VALUE",
        11 => "DATA_COMPACTED",
        _ => "error",
    }
}

/// The error a response header carries, as text (`None` when there is none or it is `OK`).
fn header_error(header: Option<&ResponseHeader>) -> Option<String> {
    let e = header?.error.as_ref()?;
    if e.r#type == 0 && e.message.is_empty() {
        return None;
    }
    Some(format!("{}: {}", error_type_name(e.r#type), e.message))
}

// ---------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------

/// Normalise one PD address to `http://host:port`: `host:port` (as TiDB's
/// `information_schema.cluster_info.INSTANCE` gives it) or `http://host:port[/]`. IPv6 hosts
/// are written `[addr]:port`. `https://` (PD with TLS) and other schemes are refused.
pub fn parse_pd_addr(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(format!(
            "PD address {s:?}: https (PD with TLS) is not supported; syncgate speaks plain \
             HTTP/2 to PD"
        ));
    }
    let rest = if lower.starts_with("http://") {
        &s["http://".len()..]
    } else if s.contains("://") {
        return Err(format!(
            "PD address {s:?}: expected host:port or http://host:port"
        ));
    } else {
        s
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, port)) = v6.split_once("]:") else {
            return Err(format!("PD address {s:?}: expected [ipv6]:port"));
        };
        (format!("[{host}]"), port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(format!("PD address {s:?}: the port is missing (host:port)"));
        };
        if host.contains(':') {
            return Err(format!("PD address {s:?}: write IPv6 hosts as [addr]:port"));
        }
        (host.to_string(), port)
    };
    let valid_host = !host.is_empty()
        && !host.contains(['/', '?', '#', '@', ' '])
        && (host.starts_with('[') || !host.contains(['[', ']']));
    if !valid_host {
        return Err(format!("PD address {s:?}: not a host name"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("http://{host}:{p}")),
        _ => Err(format!("PD address {s:?}: {port:?} is not a port")),
    }
}

/// [`parse_pd_addr`] for a comma-separated list; empty items are skipped, an empty list is an
/// error.
pub fn parse_pd_addrs(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr = parse_pd_addr(item)?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err("no PD address given".to_string());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// What PD answered to an `UpdateServiceGCSafePoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePointAnswer {
    /// The minimum service safepoint after the update.
    pub min_safe_point: u64,
    /// The service that holds it.
    pub min_service_id: String,
    /// Its remaining TTL (seconds).
    pub min_ttl: i64,
}

/// A connection to the PD leader of one cluster.
#[derive(Clone)]
pub struct PdLeader {
    /// The leader's address (`http://host:port`).
    pub addr: String,
    /// The cluster ID from `GetMembers`.
    pub cluster_id: u64,
    grpc: tonic::client::Grpc<Channel>,
}

impl std::fmt::Debug for PdLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdLeader")
            .field("addr", &self.addr)
            .field("cluster_id", &self.cluster_id)
            .finish()
    }
}

async fn open_channel(addr: &str) -> Result<tonic::client::Grpc<Channel>, String> {
    let endpoint = Endpoint::from_shared(addr.to_string())
        .map_err(|e| format!("{addr}: invalid address ({e})"))?
        .connect_timeout(PD_CONNECT_TIMEOUT)
        .timeout(PD_REQUEST_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("{addr}: cannot connect ({})", error_chain(&e)))?;
    Ok(tonic::client::Grpc::new(channel))
}

async fn unary<Req, Resp>(
    grpc: &mut tonic::client::Grpc<Channel>,
    addr: &str,
    path: &'static str,
    req: Req,
) -> Result<Resp, String>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let method = path.rsplit('/').next().unwrap_or(path);
    grpc.ready()
        .await
        .map_err(|e| format!("{addr}: {method}: not ready ({})", error_chain(&e)))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let resp = grpc
        .unary(
            tonic::Request::new(req),
            PathAndQuery::from_static(path),
            codec,
        )
        .await
        .map_err(|s| format!("{addr}: {method} failed: {}", describe_status(&s)))?;
    Ok(resp.into_inner())
}

/// `GetMembers` on `addr`: the cluster ID and the leader's first `http://` client URL
/// (`addr` itself when the answer names no leader).
async fn get_members(
    grpc: &mut tonic::client::Grpc<Channel>,
    addr: &str,
) -> Result<(u64, String), String> {
    let resp: GetMembersResponse = unary(
        grpc,
        addr,
        GET_MEMBERS_PATH,
        GetMembersRequest {
            header: Some(RequestHeader::default()),
        },
    )
    .await?;
    if let Some(e) = header_error(resp.header.as_ref()) {
        return Err(format!("{addr}: GetMembers answered {e}"));
    }
    let cluster_id = resp.header.as_ref().map_or(0, |h| h.cluster_id);
    if cluster_id == 0 {
        return Err(format!(
            "{addr}: GetMembers answered no cluster ID (PD not bootstrapped?)"
        ));
    }
    let leader = match resp.leader.as_ref() {
        None => addr.to_string(),
        Some(m) if m.client_urls.is_empty() => addr.to_string(),
        Some(m) => m
            .client_urls
            .iter()
            .find_map(|u| parse_pd_addr(u).ok())
            .ok_or_else(|| {
                format!(
                    "{addr}: the PD leader {} has no plain http client URL ({}); PD with TLS \
                     is not supported",
                    m.name,
                    m.client_urls.join(", ")
                )
            })?,
    };
    Ok((cluster_id, leader))
}

impl PdLeader {
    /// Find the PD leader through the first of `addrs` that answers `GetMembers`, and
    /// connect to it. On failure, the error of every address tried.
    pub async fn connect(addrs: &[String]) -> Result<PdLeader, String> {
        let mut errors = Vec::new();
        for addr in addrs {
            match Self::connect_via(addr).await {
                Ok(leader) => return Ok(leader),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            errors.push("no PD address given".to_string());
        }
        Err(errors.join("; "))
    }

    async fn connect_via(addr: &str) -> Result<PdLeader, String> {
        let mut grpc = open_channel(addr).await?;
        let (cluster_id, leader) = get_members(&mut grpc, addr).await?;
        let grpc = if leader == addr {
            grpc
        } else {
            open_channel(&leader)
                .await
                .map_err(|e| format!("PD leader (named by {addr}): {e}"))?
        };
        Ok(PdLeader {
            addr: leader,
            cluster_id,
            grpc,
        })
    }

    /// `UpdateServiceGCSafePoint(service_id, ttl_secs, safe_point)`. `ttl_secs ≤ 0` removes
    /// the service safepoint. A gRPC error or an error in the answer's header is an `Err`; the
    /// caller judges `min_safe_point`.
    pub async fn update_service_gc_safe_point(
        &mut self,
        service_id: &str,
        ttl_secs: i64,
        safe_point: u64,
    ) -> Result<SafePointAnswer, String> {
        let req = UpdateServiceGcSafePointRequest {
            header: Some(RequestHeader {
                cluster_id: self.cluster_id,
                sender_id: 0,
            }),
            service_id: service_id.as_bytes().to_vec(),
            ttl: ttl_secs,
            safe_point,
        };
        let addr = self.addr.clone();
        let resp: UpdateServiceGcSafePointResponse = unary(
            &mut self.grpc,
            &addr,
            UPDATE_SERVICE_GC_SAFE_POINT_PATH,
            req,
        )
        .await?;
        if let Some(e) = header_error(resp.header.as_ref()) {
            return Err(format!("{addr}: UpdateServiceGCSafePoint answered {e}"));
        }
        Ok(SafePointAnswer {
            min_safe_point: resp.min_safe_point,
            min_service_id: String::from_utf8_lossy(&resp.service_id).into_owned(),
            min_ttl: resp.ttl,
        })
    }
}

fn describe_status(s: &tonic::Status) -> String {
    let mut out = format!("{:?}", s.code());
    if !s.message().is_empty() {
        out.push_str(": ");
        out.push_str(s.message());
    }
    if let Some(source) = std::error::Error::source(s) {
        out.push_str(" (");
        out.push_str(&error_chain(source));
        out.push(')');
    }
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn request_encodes_with_the_proto_field_numbers() {
        let req = UpdateServiceGcSafePointRequest {
            header: Some(RequestHeader {
                cluster_id: 7,
                sender_id: 0,
            }),
            service_id: b"ab".to_vec(),
            ttl: 300,
            safe_point: 5,
        };
        // field 1 (len 2: field 1 varint 7), field 2 bytes "ab", field 3 varint 300 (0xac 0x02),
        // field 4 varint 5.
        assert_eq!(
            req.encode_to_vec(),
            vec![0x0a, 0x02, 0x08, 0x07, 0x12, 0x02, b'a', b'b', 0x18, 0xac, 0x02, 0x20, 0x05]
        );
        // TTL 0 (removal) is the default value and so is not on the wire at all.
        let remove = UpdateServiceGcSafePointRequest { ttl: 0, ..req };
        assert!(!remove.encode_to_vec().contains(&0x18));
    }

    #[test]
    fn response_decodes_and_skips_unknown_fields() {
        // header{cluster_id: 9}, service_id "gc_worker", TTL 1, min_safe_point 42, plus an
        // unknown field 9 (varint) that must be skipped.
        let mut bytes = vec![0x0a, 0x02, 0x08, 0x09, 0x12, 0x09];
        bytes.extend_from_slice(b"gc_worker");
        bytes.extend_from_slice(&[0x18, 0x01, 0x20, 42, 0x48, 0x01]);
        let r = UpdateServiceGcSafePointResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(r.header.unwrap().cluster_id, 9);
        assert_eq!(r.service_id, b"gc_worker");
        assert_eq!(r.ttl, 1);
        assert_eq!(r.min_safe_point, 42);
    }

    #[test]
    fn header_errors_are_read() {
        assert_eq!(header_error(None), None);
        let ok = ResponseHeader {
            cluster_id: 1,
            error: None,
        };
        assert_eq!(header_error(Some(&ok)), None);
        let bad = ResponseHeader {
            cluster_id: 1,
            error: Some(PdError {
                r#type: 2,
                message: "cluster is not bootstrapped".into(),
            }),
        };
        assert_eq!(
            header_error(Some(&bad)).unwrap(),
            "NOT_BOOTSTRAPPED: cluster is not bootstrapped"
        );
    }
}
