# Shared helpers for the CLI tests (sourced, not a test itself: ctest runs tests/cli/*.sh
# files whose names start with test_). Counts checks and ends with "N passed, N failed".
set -u
: "${HONE:?run through ctest (HONE is the hone binary)}"
passed=0
failed=0
WORK="${HONE_TEST_TMP:-/tmp}/$(basename "$0" .sh).$$"
rm -rf "$WORK"
mkdir -p "$WORK"

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect_fail NAME CODE PATTERN -- CMD...: CMD must exit with CODE and print exactly one
# stderr line that starts with "hone:" (progress lines may come before it), matching
# PATTERN (grep -E)
expect_fail() {
  local name="$1" code="$2" pattern="$3"
  shift 4
  local err rc
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  local lines
  lines=$(printf '%s\n' "$err" | grep -c '^hone:')
  if [ "$rc" -ne "$code" ]; then
    bad "$name: exit $rc, wanted $code (stderr: $err)"
  elif [ "$lines" -ne 1 ]; then
    bad "$name: wanted one stderr line, got $lines: $err"
  elif ! printf '%s' "$err" | grep -qE "^hone: .*$pattern"; then
    bad "$name: stderr '$err' does not match '$pattern'"
  else
    ok
  fi
}

# skip_or_fail REASON: a missing prerequisite skips (exit 77) unless HONE_REQUIRE_ALL=1
skip_or_fail() {
  if [ "${HONE_REQUIRE_ALL:-0}" = 1 ]; then
    echo "FAIL: $1 (required: HONE_REQUIRE_ALL=1)" >&2
    exit 1
  fi
  echo "SKIP: $1" >&2
  exit 77
}

finish() {
  rm -rf "$WORK"
  echo "$(basename "$0" .sh): $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
