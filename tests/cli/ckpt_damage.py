#!/usr/bin/python3
"""
Test helper (Debian's /usr/bin/python3 with python3-h5py): make a damaged copy of a hone
checkpoint. h5py copies the good file object by object, so the damage is exactly one thing.
  ckpt_damage.py GOOD.h5 OUT.h5 missing-row|wrong-shape|format-version|not-hone|no-config
"""
import sys

import h5py
import numpy as np


def main():
    good, out, kind = sys.argv[1:4]
    with h5py.File(good, "r") as src, h5py.File(out, "w") as dst:
        for key in src:
            src.copy(key, dst)
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        row = "/model/layers.0.mlp.up.weight"
        if kind == "missing-row":
            del dst[row]
        elif kind == "wrong-shape":
            shape = dst[row].shape
            del dst[row]
            dst[row] = np.zeros((shape[0] + 1, shape[1]), dtype=np.float32)
        elif kind == "format-version":
            dst.attrs["format_version"] = np.int64(99)
        elif kind == "not-hone":
            dst.attrs["format"] = "something-else"
        elif kind == "no-config":
            del dst.attrs["config"]
        else:
            raise SystemExit(f"unknown damage {kind}")


if __name__ == "__main__":
    main()
