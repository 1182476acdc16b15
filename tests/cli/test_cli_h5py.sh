#!/usr/bin/env bash
# h5py (an independent HDF5 reader) reads every dataset and attribute of a hone checkpoint
# with the right shapes and values: test_ckpt_roundtrip writes the golden fixture's model
# as a checkpoint, and tests/cli/h5py_check.py compares it with the fixture.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2>/dev/null || skip_or_fail "/usr/bin/python3 cannot import h5py (apt-get install python3-h5py)"
HONE_TEST_TMP="$WORK" "$(dirname "$HONE")/tests/test_ckpt_roundtrip" > "$WORK/rt.log" 2>&1 && ok ||
  bad "test_ckpt_roundtrip failed: $(tail -3 "$WORK/rt.log")"
/usr/bin/python3 "$(dirname "$0")/h5py_check.py" "$WORK/ckpt_golden/golden.h5" "$HONE_FIXTURES/gpt2_tiny.safetensors" &&
  ok || bad "h5py disagrees with the fixture"
finish
