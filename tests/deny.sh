#!/usr/bin/env bash
# Checks the dependency tree against deny.toml with cargo-deny: licenses
# (only the permissive ones listed), bans (no wildcard versions; duplicate
# versions only warn) and sources (crates.io only, no git dependencies).
#
# Advisories (`cargo deny check advisories`) are NOT checked here: cargo-deny
# fetches the RustSec advisory database, a git repository, at run time, and
# these machines (developers' and CI's) reach no network but the package
# registries. Check advisories where that database can be fetched.
#
# Installs cargo-deny if it is missing. That builds it from source with
# `cargo install --locked`: about 7 minutes on a 2-core machine, once per
# machine. The version is pinned so a new release can neither need a newer
# rustc than the machine's (1.95 when this was written) nor change the
# meaning of deny.toml; override with CARGO_DENY_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${CARGO_DENY_VERSION:-0.20.2}
if ! installed=$(cargo deny --version 2>/dev/null) || [ "$installed" != "cargo-deny $version" ]; then
    echo "== installing cargo-deny $version (found: ${installed:-none})"
    cargo install --locked cargo-deny --version "$version"
fi

echo "== $(cargo deny --version): cargo deny check licenses bans sources"
cargo deny check licenses bans sources
