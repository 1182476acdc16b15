#!/usr/bin/python3
"""
Compares hone's dequantization of GGUF tensors (raw float32 files written by
`test_gguf --dump`) with gguf-py's gguf.quants.dequantize, the independent reference.
The tolerance is zero: every value must be equal bit for bit.

Usage: gguf_compare.py MODEL.gguf TENSOR=DUMP.bin [TENSOR=DUMP.bin ...]
Interpreter: Debian's /usr/bin/python3 with the PyPI packages gguf (0.10.0) and numpy.
Exit status: 0 when all agree, 1 otherwise (one line per tensor either way).
"""

import sys

import numpy as np
import gguf


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    reader = gguf.GGUFReader(argv[1])
    tensors = {t.name: t for t in reader.tensors}
    failed = 0
    for pair in argv[2:]:
        name, path = pair.split("=", 1)
        t = tensors.get(name)
        if t is None:
            print(f"FAIL {name}: not in {argv[1]}")
            failed += 1
            continue
        ref = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32).ravel()
        got = np.fromfile(path, dtype="<f4")
        if got.size != ref.size:
            print(f"FAIL {name}: hone wrote {got.size} values, gguf-py has {ref.size}")
            failed += 1
            continue
        differ = np.count_nonzero(got.view(np.uint32) != ref.view(np.uint32))
        maxdiff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        status = "ok  " if differ == 0 else "FAIL"
        print(f"{status} {name} ({t.tensor_type.name}, {ref.size} values): {differ} differ, "
              f"max |diff| {maxdiff:g}")
        failed += differ != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
