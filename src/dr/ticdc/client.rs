//! The HTTP side: TiCDC OpenAPI v2 over plain HTTP/1.1, one connection per request (these
//! are a handful of admin calls).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::types::*;

/// How long one request may take. `DELETE` waits up to about a minute on the server (A6.1).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// A TiCDC server's OpenAPI v2 (`http://<cdc>:8300/api/v2`, A6).
#[derive(Debug, Clone)]
pub struct CdcClient {
    /// `host:port`.
    addr: String,
    namespace: String,
    /// Masked out of every message TiCDC sends back ([`CdcClient::masking`]).
    secrets: Vec<String>,
}

impl CdcClient {
    /// `addr` is `host:port` or `http://host:port`. HTTPS (a TiCDC cluster with TLS) is not
    /// supported.
    pub fn new(addr: &str) -> Result<CdcClient, CdcError> {
        let raw = addr.trim().trim_end_matches('/');
        let refuse = |message: &str| CdcError::Unreachable {
            addr: raw.to_string(),
            message: message.to_string(),
        };
        let hostport = match raw.split_once("://") {
            None => raw,
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(refuse(
                    "HTTPS is not supported; give TiCDC's plain HTTP address",
                ))
            }
            Some(_) => return Err(refuse("the address must be host:port or http://host:port")),
        };
        if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
            return Err(refuse("the address must be host:port or http://host:port"));
        }
        Ok(CdcClient {
            addr: hostport.to_string(),
            namespace: "default".into(),
            secrets: Vec::new(),
        })
    }

    /// Mask `secrets` (a sink's password, storage keys) out of TiCDC's messages: a
    /// changefeed's error may echo its sink URI.
    pub fn masking(mut self, secrets: Vec<String>) -> CdcClient {
        self.secrets.extend(secrets);
        self
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `tail` may carry its own query (`/changefeeds?state=all`).
    fn path(&self, tail: &str) -> String {
        let sep = if tail.contains('?') { '&' } else { '?' };
        format!("/api/v2{tail}{sep}namespace={}", self.namespace)
    }

    /// One request; an answer other than 200 becomes its typed error.
    async fn call(
        &self,
        method: Method,
        tail: &str,
        body: Option<Vec<u8>>,
        asked: &Asked<'_>,
    ) -> Result<Bytes, CdcError> {
        let path = self.path(tail);
        let unreachable = |message: String| CdcError::Unreachable {
            addr: self.addr.clone(),
            message: format!("{method} {}: {message}", asked.request),
        };
        let exchange = async {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| unreachable(format!("cannot connect: {e}")))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let driver = tokio::spawn(conn);
            let req = http::Request::builder()
                .method(method.clone())
                .uri(&path)
                .header(http::header::HOST, &self.addr)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| unreachable(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            driver.abort();
            Ok::<_, CdcError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                unreachable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
            })??;
        if status == 200 {
            Ok(bytes)
        } else {
            Err(api_error(asked, status, &bytes))
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
        asked: &Asked<'_>,
    ) -> Result<T, CdcError> {
        serde_json::from_slice(bytes).map_err(|e| CdcError::BadResponse {
            addr: self.addr.clone(),
            request: asked.request.to_string(),
            message: e.to_string(),
        })
    }

    /// `POST /changefeeds`.
    pub async fn create(&self, config: &ChangefeedConfig) -> Result<ChangefeedInfo, CdcError> {
        let mut secrets = config.secrets();
        secrets.extend(self.secrets.iter().cloned());
        let sink = config.sink_uri.redacted();
        let asked = Asked {
            addr: &self.addr,
            request: "create changefeed",
            id: &config.changefeed_id,
            start_ts: config.start_ts,
            sink: &sink,
            secrets: &secrets,
        };
        let body = serde_json::to_vec(config).map_err(|e| CdcError::BadResponse {
            addr: self.addr.clone(),
            request: asked.request.into(),
            message: format!("the body does not serialise: {e}"),
        })?;
        let bytes = self
            .call(Method::POST, "/changefeeds", Some(body), &asked)
            .await?;
        self.decode(&bytes, &asked)
    }

    /// `GET /changefeeds/{id}`; `None` when it does not exist.
    pub async fn get(&self, id: &str) -> Result<Option<ChangefeedInfo>, CdcError> {
        let asked = Asked {
            addr: &self.addr,
            request: "get changefeed",
            secrets: &self.secrets,
            id,
            ..Asked::default()
        };
        match self
            .call(Method::GET, &format!("/changefeeds/{id}"), None, &asked)
            .await
        {
            Ok(bytes) => self.decode(&bytes, &asked).map(Some),
            Err(CdcError::ChangefeedNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /changefeeds?state=all`.
    pub async fn list(&self) -> Result<Vec<ChangefeedSummary>, CdcError> {
        let asked = Asked {
            addr: &self.addr,
            request: "list changefeeds",
            secrets: &self.secrets,
            ..Asked::default()
        };
        let bytes = self
            .call(Method::GET, "/changefeeds?state=all", None, &asked)
            .await?;
        let list: ChangefeedList = self.decode(&bytes, &asked)?;
        Ok(list.items)
    }

    /// `POST /changefeeds/{id}/pause`: replication stops, the changefeed and its redo log stay
    /// (the failover step pauses, never removes: A8.2).
    pub async fn pause(&self, id: &str) -> Result<(), CdcError> {
        self.admin(Method::POST, id, "/pause", None).await
    }

    /// `POST /changefeeds/{id}/resume` (a JSON body is required, A6.1).
    pub async fn resume(&self, id: &str) -> Result<(), CdcError> {
        self.admin(Method::POST, id, "/resume", Some(b"{}".to_vec()))
            .await
    }

    /// `DELETE /changefeeds/{id}`. **Removing a changefeed deletes its redo log** (A8.2): call
    /// it only once `cdc redo apply` has run or the redo is provably not needed.
    pub async fn remove_after_redo_applied(&self, id: &str) -> Result<(), CdcError> {
        self.admin(Method::DELETE, id, "", None).await
    }

    async fn admin(
        &self,
        method: Method,
        id: &str,
        tail: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(), CdcError> {
        let request = match tail {
            "" => "remove changefeed".to_string(),
            t => format!("{} changefeed", t.trim_start_matches('/')),
        };
        let asked = Asked {
            addr: &self.addr,
            request: &request,
            secrets: &self.secrets,
            id,
            ..Asked::default()
        };
        self.call(method, &format!("/changefeeds/{id}{tail}"), body, &asked)
            .await
            .map(|_| ())
    }

    /// Poll `GET /changefeeds/{id}` every `poll` until the changefeed is `normal`. `warning`
    /// and `pending` are waited out (TiCDC retries) and their errors logged; `failed`,
    /// `stopped`, `finished`, `removed` end the wait with the changefeed's error.
    pub async fn wait_normal(
        &self,
        id: &str,
        timeout: Duration,
        poll: Duration,
    ) -> Result<ChangefeedInfo, CdcError> {
        let started = Instant::now();
        let mut last_logged = String::new();
        loop {
            let info = self
                .get(id)
                .await?
                .ok_or_else(|| CdcError::ChangefeedNotFound { id: id.to_string() })?;
            let message = info
                .error
                .as_ref()
                .map(|e| mask(format!("{} {}", e.code, e.message).trim(), &self.secrets))
                .unwrap_or_default();
            match &info.state {
                FeedState::Normal => return Ok(info),
                s if s.is_terminal() => {
                    return Err(CdcError::NotRunning {
                        id: id.to_string(),
                        state: s.clone(),
                        message,
                    })
                }
                s => {
                    let line = format!("{s}: {message}");
                    if line != last_logged {
                        tracing::warn!("changefeed {id} is {line}; waiting for normal");
                        last_logged = line;
                    }
                }
            }
            if started.elapsed() + poll > timeout {
                return Err(CdcError::Timeout {
                    id: id.to_string(),
                    waited: started.elapsed(),
                    state: info.state,
                    message,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }
}
