#!/usr/bin/python3
"""
Writes the GGUF fixtures tests/unit/test_gguf.c reads, with gguf-py (llama.cpp's own Python
GGUF package) as the independent writer and dequantizer:

  tests/fixtures/gguf/types.gguf   v3: metadata of every value type (each integer width,
                                   float32/64, bool, a non-ASCII string, arrays of ints, of
                                   strings and of arrays, general.alignment = 64) and small
                                   tensors of every type hone dequantizes (F32, F16, BF16,
                                   Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) plus one Q5_K it does not
  tests/fixtures/gguf/types.f32    what gguf.quants.dequantize makes of each of those
                                   tensors, raw little-endian float32, concatenated in the
                                   file's tensor order (the Q5_K one left out)
  tests/fixtures/gguf/v2.gguf      a small version-2 file (see write_v2)

Interpreter: Debian's /usr/bin/python3 with the PyPI packages gguf 0.10.0 and numpy.
Run from anywhere:  /usr/bin/python3 scripts/make_gguf_fixtures.py
Rerunning reproduces the files bit for bit (fixed seed; gguf-py's writer is deterministic).
"""

import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gguf")


def random_halfs(rng, n, scale):
    """finite, non-zero fp16 scales, as little-endian bytes"""
    return (rng.uniform(0.5, 1.0, n) * scale * rng.choice([-1, 1], n)).astype("<f2").view(np.uint8)


def q4_k_blocks(rng, n):
    """n random Q4_K super-blocks (144 bytes: half d, half dmin, scales[12], qs[128]).
    gguf-py 0.10 cannot quantize Q4_K, so the bytes are random, with finite scales."""
    d = random_halfs(rng, n, 0.01).reshape(n, 2)
    dmin = random_halfs(rng, n, 0.02).reshape(n, 2)
    rest = rng.integers(0, 256, (n, 12 + 128), dtype=np.uint8)
    return np.concatenate([d, dmin, rest], axis=1)


def q6_k_blocks(rng, n):
    """n random Q6_K super-blocks (210 bytes: ql[128], qh[64], int8 scales[16], half d)"""
    rest = rng.integers(0, 256, (n, 128 + 64 + 16), dtype=np.uint8)
    d = random_halfs(rng, n, 0.003).reshape(n, 2)
    return np.concatenate([rest, d], axis=1)


def q5_k_blocks(rng, n):
    """n random Q5_K super-blocks (176 bytes), a type hone opens but does not dequantize"""
    d = random_halfs(rng, 2 * n, 0.01).reshape(n, 4)
    return np.concatenate([d, rng.integers(0, 256, (n, 172), dtype=np.uint8)], axis=1)


def tensors(rng):
    """(name, data as stored, ggml type or None for a plain numpy dtype, numpy shape)"""
    f16 = np.array([1.0, -2.5, 65504.0, 2.0**-14, 2.0**-24, -(2.0**-24), 0.0, -0.0,
                    np.inf, -np.inf, np.nan, 3.140625, 1e-5, -7.0, 0.333, 1000.0], np.float16)
    bf16_bits = np.array([0x3F80, 0xC040, 0x3E20, 0x7180, 0x0001, 0x8000, 0x7F80, 0xFF80,
                          0x7FC0, 0x0080, 0x4049, 0xBF00], np.uint16)  # incl. subnormal, inf, NaN
    x64 = rng.standard_normal((2, 64)).astype(np.float32)
    out = [
        ("f32", rng.standard_normal((3, 5)).astype(np.float32), None, (3, 5)),
        ("f32_4d", np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4) / 8, None, (2, 1, 3, 4)),
        ("f16", f16.reshape(2, 8), None, (2, 8)),
        ("bf16", bf16_bits.view(np.uint8).reshape(3, 8), Q.BF16, (3, 4)),
        ("q8_0", gguf.quants.quantize(x64, Q.Q8_0), Q.Q8_0, (2, 64)),
        ("q4_0", gguf.quants.quantize(x64 * 3, Q.Q4_0), Q.Q4_0, (2, 64)),
        ("q4_1", gguf.quants.quantize(x64 + 1, Q.Q4_1), Q.Q4_1, (2, 64)),
        ("q4_k", q4_k_blocks(rng, 3).reshape(3, 144), Q.Q4_K, (3, 256)),
        ("q6_k", q6_k_blocks(rng, 4).reshape(2, 420), Q.Q6_K, (2, 512)),
        ("q5_k", q5_k_blocks(rng, 1), Q.Q5_K, (1, 256)),
    ]
    return out


def write_types():
    rng = np.random.default_rng(1234)
    path = os.path.join(OUT, "types.gguf")
    w = gguf.GGUFWriter(path, arch="hone-test")
    w.add_custom_alignment(64)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -128)
    w.add_uint16("t.u16", 65535)
    w.add_int16("t.i16", -32768)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2147483648)
    w.add_uint64("t.u64", 12345678901234567)
    w.add_uint64("t.u64_big", 2**64 - 1)
    w.add_int64("t.i64", -(2**63))
    w.add_float32("t.f32", 0.15625)
    w.add_float64("t.f64", -1.0 / 3.0)
    w.add_bool("t.true", True)
    w.add_bool("t.false", False)
    w.add_string("t.str", "héllo, 世界 🙂")
    w.add_array("t.arr_i32", [1, -2, 3, 2147483647])
    w.add_key_value("t.arr_u8", b"\x00\x7f\xff", V.ARRAY)  # bytes: an array of uint8
    w.add_array("t.arr_f32", [0.5, -1.25])
    w.add_array("t.arr_str", ["a", "", "ünï", "a\nb"])
    w.add_array("t.arr_nested", [[1, 2], [3], [4, 5, 6]])
    w.add_array("t.arr_nested_str", [["x", "yz"], ["w"]])
    expected = []
    for name, data, qtype, shape in tensors(rng):
        if qtype is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=qtype)
        if qtype == Q.Q5_K:
            continue
        ref = gguf.quants.dequantize(data, qtype if qtype is not None else
                                     (Q.F16 if data.dtype == np.float16 else Q.F32))
        ref = np.asarray(ref, np.float32).reshape(shape)
        expected.append(ref.ravel())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    np.concatenate(expected).astype("<f4").tofile(os.path.join(OUT, "types.f32"))


def write_v2():
    """gguf-py writes only version 3. Version 3 differs from 2 only in allowing big-endian
    files (the version field is how a reader tells them apart); a little-endian v3 file has
    exactly v2's layout, so patching the version field to 2 makes a valid v2 file."""
    path = os.path.join(OUT, "v2.gguf")
    w = gguf.GGUFWriter(path, arch="hone-v2")
    w.add_uint32("v2.answer", 42)
    w.add_tensor("w", np.array([[1.0, -2.0, 0.5]], np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(path, "r+b") as f:
        f.seek(4)
        f.write((2).to_bytes(4, "little"))


def main():
    os.makedirs(OUT, exist_ok=True)
    write_types()
    write_v2()
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")


if __name__ == "__main__":
    sys.exit(main())
