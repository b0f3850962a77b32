//! Process exit codes, all in one place (documented in README.md, stable):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every checked table is equal |
//! | 1 | at least one table differs (data or structure) |
//! | 2 | the run could not complete (bad config, connection failure, missing table, server error); partial results are still written when possible |
//! | 130 | stopped by SIGINT (Ctrl-C): checkpoint written, resumable with `--resume` |
//! | 143 | stopped by SIGTERM: as 130 |

use crate::error::Error;
use crate::report::RunResult;

/// All tables equal.
pub const EQUAL: i32 = 0;
/// Differences found.
pub const DIFFERENT: i32 = 1;
/// The run could not be completed.
pub const ERROR: i32 = 2;

/// The exit code of a run that produced a report.
pub fn for_result(result: RunResult) -> i32 {
    match result {
        RunResult::Equal => EQUAL,
        RunResult::Different => DIFFERENT,
        RunResult::Error => ERROR,
    }
}

/// The exit code of a run that stopped with `e`.
pub fn for_error(e: &Error) -> i32 {
    match e {
        Error::Interrupted { signal } => signal.exit_code(),
        _ => ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::Signal;

    #[test]
    fn codes_are_stable() {
        assert_eq!((EQUAL, DIFFERENT, ERROR), (0, 1, 2));
        assert_eq!(for_result(RunResult::Different), 1);
        let int = Error::Interrupted {
            signal: Signal::Interrupt,
        };
        let term = Error::Interrupted {
            signal: Signal::Terminate,
        };
        assert_eq!((for_error(&int), for_error(&term)), (130, 143));
        assert_eq!(for_error(&Error::Internal("x".into())), 2);
    }
}
