//! TiCDC's OpenAPI v2 (dr-interfaces A6): the changefeed that replicates the primary to the
//! secondary from the backup's TSO, with syncpoints (A7) and a redo log (A8).
//!
//! **Built against TiCDC's documented API, not a live TiCDC** (it cannot run where syncgate
//! is developed). The contract tests serve the documented answers from an in-process
//! stand-in.
//!
//! [`types`] holds the bodies, states and errors and builds the sink URI (pure);
//! [`client`] speaks HTTP/1.1 to one TiCDC server. TiCDC's error answers become one
//! [`CdcError`] each (start-ts below the GC safepoint, changefeed exists, invalid sink, …).
//! The sink URI and the redo storage URI carry secrets: they are [`SecretUri`]s, redacted
//! in `Debug` and `Display`, and masked out of TiCDC's messages before an error is built.

pub mod client;
pub mod types;

pub use client::CdcClient;
pub use types::*;
