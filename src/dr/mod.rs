//! The DR flow: full backup → restore → (replication, redo, failover, reseed), each step a
//! command that records the positions it produced in the flow state and ends with a gate.
//!
//! | step | module |
//! |---|---|
//! | the `[dr]` context: sources, storage, output directories | [`context`] |
//! | flow state and its lock | [`flow`] |
//! | backup manifest (written last: a backup without one is incomplete) | [`manifest`] |
//! | vendor tools as subprocesses (mariadb-dump, mariadb) | [`tool`] |
//! | row fingerprints taken in the backup's snapshot (gate 1 on MariaDB/MySQL) | [`fingerprint`] |
//! | `dr backup` | [`backup`] |
//! | `dr restore` and gate 1 | [`restore`], [`gate`] |
//! | `dr replicate` (MariaDB/MySQL replication from the backup's GTID) | [`replicate`] |
//! | `dr verify`: gate 2 at a GTID fence, its history | [`verify`] |
//! | `dr status` | [`status`] |
//! | `dr failover`: the archive applied to the secondary, promoted; gate 3 | [`failover`] |
//! | `dr reseed`: a rebuilt node filled from the acting primary, replicating; gate 4 | [`reseed`] |
//! | `dr switchover`: write freeze, gate at the frozen point, roles reversed | [`switchover`] |
//! | TiDB's BR through SQL, PD GC hold | [`tidb`] |
//! | TiCDC OpenAPI v2 client (the changefeed of `replicate`) | [`ticdc`] |
//!
//! docs/dr.md describes the commands, what each gate proves, and the flow state.

pub mod archive;
pub mod backup;
pub mod binlog;
pub mod context;
pub mod delta_gate;
pub mod failover;
pub mod fingerprint;
pub mod flow;
pub mod gate;
pub mod manifest;
pub mod parts;
pub mod progress;
pub mod reconstruct;
pub mod replicate;
pub mod reseed;
pub mod restore;
pub mod status;
pub mod stream;
pub mod switchover;
pub mod ticdc;
pub mod tidb;
pub mod tidb_failover;
mod tidb_roles;
pub mod tidb_steps;
pub mod tool;
pub mod verify;
pub mod written;

pub use context::DrContext;

/// Errors of the DR steps that are not a server's or storage's own error.
#[derive(Debug, thiserror::Error)]
pub enum DrError {
    /// A precondition of the step is not met (the flow state, the servers, the backup).
    #[error("{0}")]
    Precondition(String),
    /// Another run holds the flow's lock.
    #[error("the flow in {location} is locked by {owner}; wait for it to end (a lock whose process is gone is taken over automatically)")]
    Locked { owner: String, location: String },
    /// A vendor tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// A vendor tool is not installed.
    #[error("{tool} is not installed or not on PATH ({cause}); install it (Debian: {package})")]
    ToolMissing {
        tool: String,
        package: String,
        cause: String,
    },
    /// A stored object does not match the checksum its manifest recorded.
    #[error("backup object {key} is damaged: sha256 {actual}, the manifest recorded {expected}; restore refused")]
    Damaged {
        key: String,
        expected: String,
        actual: String,
    },
    /// A step this build does not have for the flow's flavour yet.
    #[error("{step} on {flavour} is not built yet")]
    NotBuilt {
        step: &'static str,
        flavour: &'static str,
    },
    /// Replication did not start or broke; `errno` is the server's (`Last_IO_Errno`,
    /// `Last_SQL_Errno`), 0 when it never connected in time.
    #[error("{message}")]
    Replication { errno: u32, message: String },
    /// `dr archive` cannot go on, and retrying would not help: binlogs purged (1236),
    /// credentials refused (1045), a missing privilege (1227), the binary log off.
    /// `errno` is the server's error number.
    #[error("{message}")]
    Archive { errno: u32, message: String },
    /// The secondary holds data the restore would replace.
    #[error("the secondary holds data in the backup's schemas: {tables}; the restore would replace these tables (tables not in the backup are left as they are). Pass --overwrite to restore anyway")]
    NotEmpty { tables: String },
}
