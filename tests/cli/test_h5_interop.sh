#!/usr/bin/env bash
# hone's HDF5 files read the same in h5py: the test_h5 binary writes interop.h5 with known
# contents (every dtype, bf16, scalars, an empty array, UTF-8 and integer attributes) and
# tests/cli/h5_interop_check.py checks each value, shape and dtype with h5py.
source "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
if ! "$PY" -c 'import h5py, numpy' 2>/dev/null; then
  rm -rf "$WORK"
  skip_or_fail "$PY cannot import h5py and numpy (Debian: python3-h5py)"
fi

writer="$(dirname "$HONE")/tests/test_h5"
if [ ! -x "$writer" ]; then
  bad "no test binary at $writer (build the test_h5 target)"
elif ! HONE_TEST_TMP="$WORK" "$writer" >"$WORK/writer.log" 2>&1; then
  bad "test_h5 failed: $(tail -5 "$WORK/writer.log")"
elif ! out=$("$PY" "$HONE_SOURCE_DIR/tests/cli/h5_interop_check.py" "$WORK/interop.h5" 2>&1); then
  bad "h5py disagrees: $out"
else
  ok
fi
finish
