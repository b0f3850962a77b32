//! Local `mariadbd` processes: throwaway and detached servers ([`server`]) and the
//! playground built from them ([`playground`]). Shared by the playground command, the
//! integration tests, the benches and (later) DR steps.

mod error;
pub mod playground;
pub mod server;

pub use error::{LocalError, Result, StartFailure};
pub use server::{
    free_port, mariadbd_available, port_is_free, DetachedServer, LocalServer, ServerOptions,
};

use std::path::{Path, PathBuf};

use mysql_async::{Conn, Opts, OptsBuilder};

/// Connection options for root (empty password) on `127.0.0.1:port`, over TCP only (no
/// switch to the unix socket).
pub fn conn_opts(port: u16) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into()
}

/// A new root connection to the local server on `port`.
pub async fn connect(port: u16) -> Result<Conn> {
    connect_to(&conn_opts(port)).await
}

/// A new connection with `opts`; a failure names the address and keeps the MySQL error.
pub async fn connect_to(opts: &Opts) -> Result<Conn> {
    Conn::new(opts.clone())
        .await
        .map_err(|error| LocalError::Connect {
            addr: addr(opts),
            error,
        })
}

/// `host:port` of `opts`, for messages.
pub fn addr(opts: &Opts) -> String {
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
}

/// `p` made absolute against the current directory.
pub(crate) fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(LocalError::io("resolve", p))?;
    Ok(cwd.join(p))
}
