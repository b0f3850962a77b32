//! Checkpoint and resume: what an interrupted run had finished, so that `check --resume`
//! goes on where it stopped and ends with the result an uninterrupted run would have had
//! (ARCHITECTURE.md, "Checkpoint and resume"). Pure bookkeeping plus plain file I/O; no
//! async.
//!
//! - [`fingerprint()`]: sha256 over a canonical JSON of the configuration, leaving out what
//!   cannot change results (parallelism, output directory, TLS files, …). A checkpoint is
//!   only resumed under the same fingerprint; [`mismatch_message`] names what changed.
//! - [`ChunkTracker`]: per table, the chunks finished so far (they finish out of order, one
//!   worker may be slow) and the **contiguous finished prefix** in key order: its length,
//!   the upper bound of its last chunk, and its accumulated counts. Only the prefix is
//!   saved; chunks after it are checked again on resume.
//! - [`Checkpoint`]: `output-dir/checkpoint/checkpoint.json`, written atomically (temporary
//!   file in the same directory, fsync, rename), so a `kill -9` leaves the previous or the
//!   new complete file, never a torn one.
//! - Fix SQL part files: each chunk's statements go to
//!   `fix-on-<target>/.parts/<file stem>/<seq>.sql` and are joined in key order into the
//!   table's file when it finishes; [`prune_parts`] drops the parts a resume redoes.

mod file;
mod fingerprint;
mod parts;
#[cfg(test)]
mod tests;
mod tracker;

pub use file::{checkpoint_dir, load, remove, save, Checkpoint, EntryState, ReadAt, TableEntry};
pub use fingerprint::{changed_keys, fingerprint, mismatch_message, Effective, Fingerprint};
pub use parts::{list_parts, part_path, parts_dir, prune_parts};
pub use tracker::{ChunkCounts, ChunkTracker, Prefix};

/// Directory of the checkpoint inside the output directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// File name of the checkpoint inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// Version of the file format; another version is refused on resume.
pub const FORMAT_VERSION: u32 = 1;
/// Directory of the per-chunk fix SQL part files inside `fix-on-<target>/`.
pub const PARTS_DIR: &str = ".parts";
