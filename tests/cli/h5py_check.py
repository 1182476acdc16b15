#!/usr/bin/python3
"""
Test helper (Debian's /usr/bin/python3 with python3-h5py and numpy): h5py reads every
dataset and attribute of a hone checkpoint with the right shapes and values. The values
are checked against the golden fixture (a safetensors file, parsed here with numpy alone),
independently of hone's own reader.
  h5py_check.py CHECKPOINT.h5 FIXTURE.safetensors
"""
import json
import struct
import sys

import h5py
import numpy as np

DTYPES = {"F32": np.float32, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    return out


def main():
    ckpt, fixture = sys.argv[1], sys.argv[2]
    ref = read_safetensors(fixture)
    failures = []
    seen = 0
    with h5py.File(ckpt, "r") as f:
        want_attrs = {"format": "hone", "format_version": 1, "arch": "gpt2", "step": 123, "tokens": 4567, "dtype": "f32"}
        for k, v in want_attrs.items():
            if f.attrs.get(k) != v:
                failures.append(f"root attribute {k} = {f.attrs.get(k)!r}, want {v!r}")
        if "layers: 2" not in f.attrs["config"]:
            failures.append("config attribute lacks the model")
        for group in ("model", "peft", "mask", "optim", "train", "tokenizer"):
            if group not in f:
                failures.append(f"group /{group} missing")
        params = {k[len("param."):]: v for k, v in ref.items() if k.startswith("param.")}
        for name, want in params.items():
            for group in ("model", "optim/m", "optim/v"):
                ds = f[f"{group}/{name}"]
                seen += 1
                if ds.shape != want.shape or ds.dtype != np.float32:
                    failures.append(f"/{group}/{name}: shape {ds.shape} dtype {ds.dtype}, want {want.shape} float32")
                elif group == "model" and not np.array_equal(ds[()], want):
                    failures.append(f"/model/{name}: values differ from the fixture")
                if ds.compression != "gzip" and ds.size > 1024:
                    failures.append(f"/{group}/{name}: not deflated")
        if set(f["model"].keys()) != set(params):
            failures.append(f"/model has rows the fixture lacks: {sorted(set(f['model']) ^ set(params))[:4]}")
        if f["optim"].attrs["t"] != 123:
            failures.append("/optim attribute t")
        tr = f["train"]
        if list(tr["cursor"][()]) != [3, 1, 77] or list(tr["shard_order"][()]) != [2, 0, 1] or tr["rng"].shape != (4,):
            failures.append("/train cursor, shard_order or rng")
        if tr.attrs["best_val_loss"] != 2.5:
            failures.append("/train best_val_loss")
        if f["tokenizer"].attrs["type"] != "byte":
            failures.append("/tokenizer type")
    with h5py.File(ckpt.replace("golden.h5", "golden_bf16.h5"), "r") as f:
        ds = f["model/layers.0.mlp.up.weight"]
        vals = ds[()].astype(np.float64)
        want = params["layers.0.mlp.up.weight"].astype(np.float64)
        stored = ds.id.get_type()
        if ds.dtype.kind != "f" or stored.get_size() != 2 or f.attrs["dtype"] != "bf16":
            failures.append(f"bf16 dataset reads as {ds.dtype} from {stored.get_size()} bytes, want floats from 2")
        elif np.max(np.abs(vals - want) / np.maximum(np.abs(want), 1e-30)) > 2.0 ** -8:
            failures.append("bf16 values are not the weights rounded to bf16")
    for msg in failures:
        print("FAIL:", msg)
    print(f"h5py_check: {seen} datasets compared, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
