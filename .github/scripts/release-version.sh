#!/usr/bin/env bash
# The release workflow's first step: checks a release tag against the chart and the
# crates, and prints `version=X.Y.Z` (the tag without its `v`) for $GITHUB_OUTPUT.
# The tag must be vX.Y.Z (or vX.Y.Z-PRERELEASE) and equal the chart's `version`,
# its `appVersion` (the image tag the chart pulls) and the version of every binary's
# crate (what the binaries report), so one tag publishes one consistent release.
# Usage: release-version.sh TAG [REPOSITORY_ROOT]
set -euo pipefail

tag=${1:?usage: release-version.sh TAG [REPOSITORY_ROOT]}
root=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
# The binaries the Dockerfile builds (one image each, --build-arg BIN) and their crates.
crates=(services/order-service services/delivery-service services/controller tools/orderflow)

fail() { printf 'release-version: %s\n' "$*" >&2; exit 1; }

[[ $tag =~ ^v([0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?)$ ]] \
  || fail "tag '$tag' is not vMAJOR.MINOR.PATCH[-PRERELEASE]"
version=${BASH_REMATCH[1]}

# The first `key: value` at the start of a line, quotes removed.
field() { sed -n -E "s/^$1: *\"?([^\"#]*[^\" #])\"? *(#.*)?$/\\1/p" "$2" | head -1; }

chart="$root/charts/orderflow/Chart.yaml"
[ "$(field version "$chart")" = "$version" ] \
  || fail "charts/orderflow/Chart.yaml has version '$(field version "$chart")', the tag says '$version'"
[ "$(field appVersion "$chart")" = "$version" ] \
  || fail "charts/orderflow/Chart.yaml has appVersion '$(field appVersion "$chart")', the tag says '$version'"
for crate in "${crates[@]}"; do
  found=$(sed -n -E 's/^version = "([^"]+)"$/\1/p' "$root/$crate/Cargo.toml" | head -1)
  [ "$found" = "$version" ] || fail "$crate/Cargo.toml has version '$found', the tag says '$version'"
done
echo "version=$version"
