#!/usr/bin/python3
"""
Test helper (Debian's /usr/bin/python3 with python3-h5py): exit 0 if two hone checkpoints
hold bit-identical datasets under the given groups (default /model and /optim), else print
the first difference and exit 1.
  h5_equal.py A.h5 B.h5 [GROUP ...]
"""
import sys

import h5py
import numpy as np


def datasets(f, group):
    out = {}
    f[group].visititems(lambda name, obj: out.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def main():
    a_path, b_path = sys.argv[1], sys.argv[2]
    groups = sys.argv[3:] or ["/model", "/optim"]
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        for g in groups:
            da, db = datasets(a, g), datasets(b, g)
            if sorted(da) != sorted(db):
                print(f"{g}: different rows: {sorted(set(da) ^ set(db))[:5]}")
                return 1
            if not da:
                print(f"{g}: no datasets")
                return 1
            for name in sorted(da):
                x, y = da[name][()], db[name][()]
                if x.shape != y.shape or x.tobytes() != y.tobytes():
                    diff = np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))) if x.shape == y.shape else None
                    print(f"{g}/{name}: differs (max |diff| {diff})")
                    return 1
        # the counters of two checkpoints (a mask file from `hone mask build` has none)
        both = a.attrs.get("format") == "hone" and b.attrs.get("format") == "hone"
        for attr in ("step", "tokens") if both else ():
            if a.attrs[attr] != b.attrs[attr]:
                print(f"attribute {attr}: {a.attrs[attr]} != {b.attrs[attr]}")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
