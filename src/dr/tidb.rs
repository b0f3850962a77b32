//! TiDB BR through SQL (being built).
