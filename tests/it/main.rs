//! Integration tests (one binary: `cargo test --test integration`).
//! Servers and per-test databases come from [`support`].

mod support;

mod harness_smoke;
