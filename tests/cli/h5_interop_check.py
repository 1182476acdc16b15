#!/usr/bin/python3
"""Reads the file tests/unit/test_h5.c writes ($HONE_TEST_TMP/interop.h5) with h5py and
checks every value, shape and dtype: hone's HDF5 files must read the same elsewhere, the
bf16 type as ordinary floats and the strings as str. Usage: h5_interop_check.py FILE"""
import math
import sys

import h5py
import numpy as np

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def same(ds, dtype, shape, values):
    got = ds[()]
    check(ds.dtype == np.dtype(dtype), f"{ds.name}: dtype {ds.dtype}, wanted {dtype}")
    check(ds.shape == shape, f"{ds.name}: shape {ds.shape}, wanted {shape}")
    want = np.array(values, dtype=dtype).reshape(shape)
    check(np.array_equal(got, want), f"{ds.name}: values {got!r}, wanted {want!r}")


def main(path):
    with h5py.File(path, "r") as f:
        same(f["f32"], "<f4", (2, 3), [0, 1, -2, 0.5, 3.25, -1024])
        big = (np.arange(600 * 512) % 1000).astype(np.float32) * np.float32(0.125) - np.float32(60)
        same(f["big"], "<f4", (600, 512), big)
        check(f["big"].chunks is not None and f["big"].compression == "gzip", "big: not chunked+gzip")

        bf = f["bf16"]
        check(bf.dtype.kind == "f", f"bf16: dtype {bf.dtype} is not a float")
        check(bf.shape == (2, 4), f"bf16: shape {bf.shape}")
        want = [1, -3, 0.15625, 1, 1.015625, math.inf, -0.0, 3.3895313892515355e38]
        got = bf[()].astype(np.float64).ravel().tolist()
        check(got == want, f"bf16: values {got}, wanted {want}")
        check(math.copysign(1, got[6]) < 0, "bf16: -0 lost its sign")
        check(f["bf16"].id.get_type().get_size() == 2, "bf16: not stored in 2 bytes")
        check(f["bf16_nan"].shape == () and math.isnan(f["bf16_nan"][()]), "bf16_nan: not NaN")
        bfbig = f["bf16_big"][()]
        check(bfbig.shape == (2000,) and bf.dtype.kind == "f", "bf16_big: shape or dtype")
        check(np.array_equal(bfbig, (np.arange(2000) % 256 - 128).astype(bfbig.dtype)),
              "bf16_big: values")

        same(f["ints/i32"], "<i4", (4,), [-2**31, -1, 0, 2**31 - 1])
        same(f["ints/u32"], "<u4", (3,), [0, 1, 2**32 - 1])
        same(f["ints/i64"], "<i8", (3,), [-2**63, 0, 2**63 - 1])
        same(f["ints/u64"], "<u8", (2,), [0, 2**64 - 1])
        same(f["ints/u8"], "u1", (2, 3), [0, 1, 2, 127, 128, 255])
        same(f["scalar_i64"], "<i8", (), -7)
        same(f["scalar_f32"], "<f4", (), 2.5)
        same(f["empty"], "<f4", (0, 4), np.zeros((0, 4)))

        title = f.attrs["title"]
        check(isinstance(title, str) and title == "h\u00f6n\u00eb \u2713 \u65e5\u672c",
              f"title: {title!r}")
        check(f.attrs["i64_min"] == -2**63 and f.attrs["i64_max"] == 2**63 - 1, "i64 attrs")
        check(f.attrs["i64_min"].dtype == np.int64, "i64 attr dtype")
        check(f.attrs["lr"] == 0.1 and f.attrs["lr"].dtype == np.float64, "f64 attr")
        note = f["ints"].attrs["note"]
        check(isinstance(note, str) and note == "", f"note: {note!r}")
        check(f["ints"].attrs["count"] == 5, "count attr")
        check(sorted(f.keys()) == ["bf16", "bf16_big", "bf16_nan", "big", "empty", "f32", "ints",
                                   "scalar_f32", "scalar_i64"], f"root keys {sorted(f.keys())}")
    for what in failures:
        print(f"FAIL: {what}", file=sys.stderr)
    print(f"h5_interop_check: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: h5_interop_check.py FILE")
    sys.exit(main(sys.argv[1]))
