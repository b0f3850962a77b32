//! Process exit codes, all defined here (documented in README.md, stable). Each outcome
//! maps itself onto them: `RunReport::exit_code`, `Error::exit_code`, `Signal::exit_code`.
//! A leaf module: it depends on nothing, so every layer can name the codes.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every checked table is equal, or was repaired by `--apply-fix` and re-checked equal |
//! | 1 | at least one table differs (data or structure) |
//! | 2 | the run could not complete (bad config, connection failure, missing table, server error); partial results are still written when possible |
//! | 3 | incomplete: `--max-runtime` passed; checkpoint written, resumable with `--resume` |
//! | 4 | not started: another run holds the lock (`check --lock`) |
//! | 130 | stopped by SIGINT (Ctrl-C): checkpoint written, resumable with `--resume` |
//! | 143 | stopped by SIGTERM: as 130 |

/// All tables equal (or repaired and re-checked equal).
pub const EQUAL: i32 = 0;
/// Differences found.
pub const DIFFERENT: i32 = 1;
/// The run could not be completed.
pub const ERROR: i32 = 2;
/// Stopped by `--max-runtime` at a safe point; resumable.
pub const INCOMPLETE: i32 = 3;
/// Another run holds the lock (`check --lock`).
pub const LOCKED: i32 = 4;
/// Stopped by SIGINT (128 + 2).
pub const SIGINT: i32 = 130;
/// Stopped by SIGTERM (128 + 15).
pub const SIGTERM: i32 = 143;

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::interrupt::Signal;
    use crate::report::{RunReport, RunResult};

    #[test]
    fn every_outcome_maps_to_its_documented_code() {
        assert_eq!((super::EQUAL, super::DIFFERENT, super::ERROR), (0, 1, 2));
        let int = Error::from(Signal::Interrupt);
        let term = Error::from(Signal::Terminate);
        assert_eq!((int.exit_code(), term.exit_code()), (130, 143));
        assert_eq!(Error::Internal("x".into()).exit_code(), 2);
        let report = |result| RunReport {
            result,
            ..serde_json::from_str::<RunReport>(MINIMAL).unwrap()
        };
        assert_eq!(report(RunResult::Equal).exit_code(), 0);
        assert_eq!(report(RunResult::Repaired).exit_code(), 0);
        assert_eq!(report(RunResult::Different).exit_code(), 1);
        assert_eq!(report(RunResult::Error).exit_code(), 2);
    }

    const MINIMAL: &str = r#"{"result":"equal","syncgate_version":"0","checksum":"sg3",
        "started_at":"","duration_ms":0,"upstream":[],"downstream":{"name":"d","address":"",
        "flavour":"","version":"","snapshot":""},"output_dir":"","tables":[],"error":null,
        "warnings":[]}"#;
}
