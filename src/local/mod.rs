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
