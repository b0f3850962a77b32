//! A mock PD gRPC server: `pdpb.PD`'s `GetMembers` and `UpdateServiceGCSafePoint` on
//! 127.0.0.1, with PD's leader and cluster-ID checks, recording every request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use syncgate::snapshot::pd::{
    GetMembersRequest, GetMembersResponse, Member, PdError, ResponseHeader,
    UpdateServiceGcSafePointRequest, UpdateServiceGcSafePointResponse, GET_MEMBERS_PATH,
    UPDATE_SERVICE_GC_SAFE_POINT_PATH,
};
use tokio::net::TcpListener;

/// One request the mock received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Call {
    GetMembers {
        cluster_id: u64,
    },
    Update {
        cluster_id: u64,
        service_id: String,
        ttl: i64,
        safe_point: u64,
    },
}

/// The mock's behaviour and memory. Like PD (tikv/pd `server/grpc_service.go`,
/// `pkg/gc/safepoint.go`): `GetMembers` needs no cluster ID; `UpdateServiceGCSafePoint` is
/// refused by a follower ("not leader") and for another cluster ID ("mismatch cluster id");
/// TTL ≤ 0 removes the service safepoint; a safe point below the current minimum is not
/// stored; the answer carries the minimum over all services (`gc_worker` holds the GC
/// bound).
pub(super) struct PdState {
    pub(super) cluster_id: u64,
    /// The leader's client URL to advertise; `None`: this mock is the leader.
    pub(super) leader_url: Option<String>,
    /// `gc_worker`'s safe point: the GC bound.
    pub(super) gc_floor: u64,
    /// Answer updates with this gRPC error.
    pub(super) fail_updates: Option<tonic::Code>,
    /// Answer updates with this error in the response header.
    pub(super) header_error: Option<(i32, String)>,
    /// Report this minimum safe point whatever is stored.
    pub(super) force_min: Option<u64>,
    /// Service safepoints stored: ID → (safe point, TTL).
    pub(super) services: BTreeMap<String, (u64, i64)>,
    pub(super) calls: Vec<(Instant, Call)>,
}

impl PdState {
    fn members(&mut self, req: GetMembersRequest) -> GetMembersResponse {
        self.calls.push((
            Instant::now(),
            Call::GetMembers {
                cluster_id: req.header.map_or(0, |h| h.cluster_id),
            },
        ));
        let leader = Member {
            name: "pd-leader".into(),
            member_id: 1,
            peer_urls: vec![],
            client_urls: self.leader_url.iter().cloned().collect(),
        };
        GetMembersResponse {
            header: Some(ResponseHeader {
                cluster_id: self.cluster_id,
                error: None,
            }),
            members: vec![leader.clone()],
            leader: Some(leader),
            etcd_leader: None,
        }
    }

    fn update(
        &mut self,
        req: UpdateServiceGcSafePointRequest,
    ) -> Result<UpdateServiceGcSafePointResponse, tonic::Status> {
        let cluster_id = req.header.as_ref().map_or(0, |h| h.cluster_id);
        let service_id = String::from_utf8(req.service_id.clone()).unwrap();
        self.calls.push((
            Instant::now(),
            Call::Update {
                cluster_id,
                service_id: service_id.clone(),
                ttl: req.ttl,
                safe_point: req.safe_point,
            },
        ));
        if let Some(code) = self.fail_updates {
            return Err(tonic::Status::new(code, "mock PD is unavailable"));
        }
        if self.leader_url.is_some() {
            return Err(tonic::Status::unknown("not leader"));
        }
        if cluster_id != self.cluster_id {
            return Err(tonic::Status::failed_precondition(format!(
                "mismatch cluster id, need {} but got {cluster_id}",
                self.cluster_id
            )));
        }
        let header = |error: Option<PdError>| {
            Some(ResponseHeader {
                cluster_id: self.cluster_id,
                error,
            })
        };
        if let Some((t, m)) = &self.header_error {
            return Ok(UpdateServiceGcSafePointResponse {
                header: header(Some(PdError {
                    r#type: *t,
                    message: m.clone(),
                })),
                ..Default::default()
            });
        }
        let current_min = self
            .services
            .values()
            .map(|(sp, _)| *sp)
            .chain([self.gc_floor])
            .min()
            .unwrap();
        if req.ttl <= 0 {
            self.services.remove(&service_id);
        } else if req.safe_point >= current_min {
            self.services.insert(service_id, (req.safe_point, req.ttl));
        }
        let (min_id, min) = self
            .services
            .iter()
            .map(|(id, (sp, _))| (id.clone(), *sp))
            .chain([("gc_worker".to_string(), self.gc_floor)])
            .min_by_key(|(_, sp)| *sp)
            .unwrap();
        Ok(UpdateServiceGcSafePointResponse {
            header: header(None),
            service_id: min_id.into_bytes(),
            ttl: 100,
            min_safe_point: self.force_min.unwrap_or(min),
        })
    }
}

type Shared = Arc<Mutex<PdState>>;
type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct GetMembersHandler(Shared);

impl tonic::server::UnaryService<GetMembersRequest> for GetMembersHandler {
    type Response = GetMembersResponse;
    type Future = std::future::Ready<Result<tonic::Response<GetMembersResponse>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<GetMembersRequest>) -> Self::Future {
        let resp = self.0.lock().unwrap().members(req.into_inner());
        std::future::ready(Ok(tonic::Response::new(resp)))
    }
}

struct UpdateHandler(Shared);

impl tonic::server::UnaryService<UpdateServiceGcSafePointRequest> for UpdateHandler {
    type Response = UpdateServiceGcSafePointResponse;
    type Future = std::future::Ready<
        Result<tonic::Response<UpdateServiceGcSafePointResponse>, tonic::Status>,
    >;

    fn call(&mut self, req: tonic::Request<UpdateServiceGcSafePointRequest>) -> Self::Future {
        let resp = self.0.lock().unwrap().update(req.into_inner());
        std::future::ready(resp.map(tonic::Response::new))
    }
}

/// The `pdpb.PD` service, routed by gRPC path (what tonic's codegen would generate).
#[derive(Clone)]
struct PdService(Shared);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for PdService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let state = self.0.clone();
        match req.uri().path() {
            p if p == GET_MEMBERS_PATH => Box::pin(async move {
                let codec =
                    tonic_prost::ProstCodec::<GetMembersResponse, GetMembersRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(GetMembersHandler(state), req).await)
            }),
            p if p == UPDATE_SERVICE_GC_SAFE_POINT_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<
                    UpdateServiceGcSafePointResponse,
                    UpdateServiceGcSafePointRequest,
                >::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(UpdateHandler(state), req).await)
            }),
            other => {
                let status = tonic::Status::unimplemented(format!("mock PD: no {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// A running mock PD on 127.0.0.1.
pub(super) struct MockPd {
    pub(super) addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl MockPd {
    pub(super) async fn start(cluster_id: u64, gc_floor: u64) -> MockPd {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(PdState {
            cluster_id,
            leader_url: None,
            gc_floor,
            fail_updates: None,
            header_error: None,
            force_min: None,
            services: BTreeMap::new(),
            calls: Vec::new(),
        }));
        let svc = PdService(state.clone());
        let server = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(svc, incoming)
                .await;
        });
        MockPd {
            addr,
            state,
            server,
        }
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(super) fn with<R>(&self, f: impl FnOnce(&mut PdState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub(super) fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.iter().map(|(_, c)| c.clone()).collect())
    }

    pub(super) fn updates(&self) -> Vec<(Instant, i64)> {
        self.with(|s| {
            s.calls
                .iter()
                .filter_map(|(t, c)| match c {
                    Call::Update { ttl, .. } => Some((*t, *ttl)),
                    _ => None,
                })
                .collect()
        })
    }

    pub(super) fn count(&self) -> usize {
        self.with(|s| s.calls.len())
    }

    /// Wait until `pred` holds on the calls, at most `limit`.
    pub(super) async fn wait_until(&self, limit: Duration, pred: impl Fn(&[Call]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&self.calls()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mock PD: condition not met within {limit:?}; calls: {:?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for MockPd {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(super) fn update(cluster_id: u64, service_id: &str, ttl: i64, safe_point: u64) -> Call {
    Call::Update {
        cluster_id,
        service_id: service_id.into(),
        ttl,
        safe_point,
    }
}
