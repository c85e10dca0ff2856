//! Benchmarks of the telemetria services, each measuring our code and its
//! references in the same run and printing the ratios (docs/performance.md).
//! They are programs, not tests: `services/benchmarks/run.sh` starts a throwaway
//! MariaDB, builds, runs them and stops everything.

pub mod backup_bench;
pub mod chain_bench;
pub mod data;
pub mod db;
pub mod panel_bench;
pub mod process;
pub mod report;
pub mod spool_bench;
