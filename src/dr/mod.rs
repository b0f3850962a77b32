pub mod tidb;
