//! How a failed command is reported: its exit status ([`exit_status`], from
//! the [`Kind`] of the first typed cause) and the one line printed on stderr
//! ([`error_line`], with multi-line causes folded by [`one_line`]).

use crate::bundle::BundleError;
use crate::failure::{exit, Classify, Kind};
use crate::trust::TrustError;
use crate::updater::UpdateError;

/// The exit status for an error chain produced by [`run`](super::run): the
/// [`Kind`](crate::failure::Kind) of the first cause that is one of the
/// library's typed errors, [`exit::FAILURE`] if none is.
pub fn exit_status(err: &anyhow::Error) -> i32 {
    failure_kind(err).map_or(exit::FAILURE, Kind::exit_status)
}

/// The kind of the first typed cause in `err`'s chain.
fn failure_kind(err: &anyhow::Error) -> Option<Kind> {
    fn kind_of<E: Classify + std::error::Error + 'static>(
        cause: &(dyn std::error::Error + 'static),
    ) -> Option<Kind> {
        cause.downcast_ref::<E>().map(Classify::kind)
    }
    err.chain().find_map(|cause| {
        kind_of::<UpdateError>(cause)
            .or_else(|| kind_of::<BundleError>(cause))
            .or_else(|| kind_of::<crate::config::ConfigError>(cause))
            .or_else(|| kind_of::<TrustError>(cause))
            .or_else(|| kind_of::<crate::client::ClientError>(cause))
            .or_else(|| kind_of::<crate::fleet::FleetError>(cause))
            .or_else(|| kind_of::<crate::daemon::DaemonError>(cause))
    })
}

/// The one line `seesaw` prints for an error: every cause of the chain, each
/// once, joined with `": "`.
///
/// Our error types show their source in their own message and also return
/// it from `source()`, so anyhow's `{:#}` would print it twice; a cause whose
/// text the line already contains is skipped. A cause spanning several lines
/// (the TOML parser's message with its source excerpt and caret) is folded
/// into one by [`one_line`].
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Folds a message of several lines into one: lines of a source excerpt
/// (`2 | data_dir =`, `  |    ^`) are dropped, the others trimmed and joined,
/// the first with `": "` and the rest with `"; "`.
///
/// The TOML parser's five lines `TOML parse error at line 2, column 12`,
/// `  |`, `2 | data_dir =`, `  |            ^`, `invalid string` become
/// `TOML parse error at line 2, column 12: invalid string`.
pub fn one_line(text: &str) -> String {
    let excerpt = |l: &str| {
        l.trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|')
    };
    let mut out = String::new();
    for (i, l) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !excerpt(l))
        .enumerate()
    {
        match i {
            0 => {}
            _ if out.ends_with(':') || out.ends_with(';') => out.push(' '),
            1 => out.push_str(": "),
            _ => out.push_str("; "),
        }
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to read {path}: {source}")]
    struct Read {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(Read {
            path: "x",
            source: io,
        })
        .context("status");
        assert_eq!(
            error_line(&err),
            "status: failed to read x: entity not found"
        );
    }

    #[test]
    fn a_cause_not_yet_in_the_message_is_appended() {
        let err = anyhow::anyhow!("timed out").context("fetch failed");
        assert_eq!(error_line(&err), "fetch failed: timed out");
    }

    #[test]
    fn a_toml_diagram_becomes_one_line() {
        let text =
            "TOML parse error at line 2, column 12\n  |\n2 | data_dir = \n  |            ^\n\
                    invalid string\nexpected `\"`, `'`\n";
        assert_eq!(
            one_line(text),
            "TOML parse error at line 2, column 12: invalid string; expected `\"`, `'`"
        );
        assert_eq!(one_line("one line"), "one line");
    }
}
