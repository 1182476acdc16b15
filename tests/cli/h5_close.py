#!/usr/bin/python3
"""
Test helper (Debian's /usr/bin/python3 with python3-h5py): exit 0 if two hone checkpoints
hold the same rows under the given groups with every value within ATOL + RTOL * |b|, else
print the worst row and exit 1. Prints the largest absolute difference either way.
  h5_close.py A.h5 B.h5 ATOL RTOL [GROUP ...]
"""
import sys

import h5py
import numpy as np


def datasets(f, group):
    out = {}
    f[group].visititems(lambda name, obj: out.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def main():
    a_path, b_path, atol, rtol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    groups = sys.argv[5:] or ["/model"]
    worst, worst_row, ok = 0.0, "", True
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        for g in groups:
            da, db = datasets(a, g), datasets(b, g)
            if sorted(da) != sorted(db) or not da:
                print(f"{g}: different rows: {sorted(set(da) ^ set(db))[:5]}")
                return 1
            for name in sorted(da):
                x = np.asarray(da[name][...], dtype=np.float64)
                y = np.asarray(db[name][...], dtype=np.float64)
                if x.shape != y.shape:
                    print(f"{g}/{name}: shapes {x.shape} and {y.shape}")
                    return 1
                d = np.abs(x - y)
                if d.size and d.max() > worst:
                    worst, worst_row = float(d.max()), f"{g}/{name}"
                if not np.all(d <= atol + rtol * np.abs(y)):
                    ok = False
    print(f"largest difference {worst:.3g} ({worst_row})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
