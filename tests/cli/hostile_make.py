#!/usr/bin/python3
"""
Test helper for test_cli_hostile.sh (Debian's /usr/bin/python3; h5py only for the
checkpoint copies): write hostile input files, each damaged in exactly one way, made from
the committed fixtures and from files the test made.
  hostile_make.py FIXTURES GOOD_CKPT OUT_DIR
writes OUT_DIR/<case>.<ext> (GGUF, safetensors, tokenizer files, shards, checkpoints) and
OUT_DIR/<case>/ for cases that need a folder (a Hugging Face model folder, a PEFT adapter).
"""
import json
import os
import shutil
import struct
import sys

FIX, GOOD, OUT = sys.argv[1:4]


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def patch(data, at, fmt, *values):
    b = bytearray(data)
    struct.pack_into(fmt, b, at, *values)
    return bytes(b)


# ---- GGUF: byte positions of a valid file's fields, then one field broken at a time ----

GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_layout(b):
    """{'kv': [(start, key, type_at)], 'tensors': [(start, name, ndim_at, type_at, offset_at)],
    'data': start of the tensor infos' end}"""
    def rstr(p):
        (n,) = struct.unpack_from("<Q", b, p)
        return b[p + 8 : p + 8 + n].decode(), p + 8 + n

    def skip(t, p):
        if t == 8:
            return rstr(p)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, p)
            p += 12
            for _ in range(n):
                p = skip(et, p)
            return p
        return p + GGUF_SIZES[t]

    nt, nkv = struct.unpack_from("<QQ", b, 8)
    p, kvs, tensors = 24, [], []
    for _ in range(nkv):
        key, q = rstr(p)
        (t,) = struct.unpack_from("<I", b, q)
        kvs.append((p, key, q))
        p = skip(t, q + 4)
    for _ in range(nt):
        name, q = rstr(p)
        (nd,) = struct.unpack_from("<I", b, q)
        tensors.append((p, name, q, q + 4 + 8 * nd, q + 8 + 8 * nd))
        p = q + 4 + 8 * nd + 12
    return {"kv": kvs, "tensors": tensors, "infos_end": p}


def gguf_cases():
    b = open(os.path.join(FIX, "gguf/gpt2_tiny.gguf"), "rb").read()
    L = gguf_layout(b)
    kv = {k: (start, type_at) for start, k, type_at in L["kv"]}
    t0 = L["tensors"][0]
    byname = {t[1]: t for t in L["tensors"]}
    write("gguf_bad_magic.gguf", b"GGUX" + b[4:])
    write("gguf_version_99.gguf", patch(b, 4, "<I", 99))
    write("gguf_version_1.gguf", patch(b, 4, "<I", 1))
    write("gguf_empty.gguf", b"")
    write("gguf_truncated_header.gguf", b[:20])
    write("gguf_truncated_kv.gguf", b[: L["kv"][12][0] + 100])  # inside tokenizer.ggml.tokens
    write("gguf_truncated_infos.gguf", b[: L["tensors"][10][0] + 20])
    write("gguf_truncated_data.gguf", b[: len(b) - 5000])
    write("gguf_tensor_count_huge.gguf", patch(b, 8, "<Q", 1 << 40))
    write("gguf_kv_count_huge.gguf", patch(b, 16, "<Q", (1 << 64) - 1))
    write("gguf_ndims_5.gguf", patch(b, t0[2], "<I", 5))
    write("gguf_ndims_0.gguf", patch(b, t0[2], "<I", 0))
    write("gguf_dim_zero.gguf", patch(b, t0[2] + 4, "<Q", 0))
    write("gguf_dims_overflow.gguf", patch(b, t0[2] + 4, "<QQ", 1 << 62, 1 << 62))
    write("gguf_unknown_type.gguf", patch(b, t0[3], "<I", 200))
    write("gguf_offset_beyond.gguf", patch(b, t0[4], "<Q", 1 << 40))
    write("gguf_offset_misaligned.gguf", patch(b, t0[4], "<Q", 7))
    # general.name's string claims 2^60 bytes
    start, type_at = kv["general.name"]
    write("gguf_string_huge.gguf", patch(b, type_at + 4, "<Q", 1 << 60))
    write("gguf_value_type_bad.gguf", patch(b, type_at, "<I", 99))
    # the tokens array claims 2^62 strings
    start, type_at = kv["tokenizer.ggml.tokens"]
    write("gguf_array_huge.gguf", patch(b, type_at + 8, "<Q", 1 << 62))
    # a second tensor named like the first: blk.1.attn_qkv.weight -> blk.0.attn_qkv.weight
    p = byname["blk.1.attn_qkv.weight"][0] + 8
    write("gguf_duplicate_tensor.gguf", b[:p] + b"blk.0" + b[p + 5 :])
    # a second key named like another: tokenizer.ggml.bos_token_id -> ...eos_token_id
    p = kv["tokenizer.ggml.bos_token_id"][0] + 8
    write("gguf_duplicate_key.gguf", b[:p] + b"tokenizer.ggml.eos" + b[p + 18 :])
    # general.file_type (uint32 0, F32) renamed general.alignment: an alignment of 0
    p = kv["general.file_type"][0] + 8
    write("gguf_alignment_zero.gguf", b[:p] + b"general.alignment" + b[p + 17 :])
    # a NUL inside a tensor name
    p = t0[0] + 8
    write("gguf_name_nul.gguf", b[:p] + b"tok\0" + b[p + 4 :])


# ---- safetensors: a model.safetensors with one header field wrong, in a copy of the HF folder ----


def st_parts(path):
    b = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", b, 0)
    return json.loads(b[8 : 8 + n]), b[8 + n :]


def st_bytes(header, data):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def hf_folder(case, st=None, **files):
    """OUT/case/: the tiny GPT-2 HF folder with model.safetensors or other files replaced"""
    d = os.path.join(OUT, case)
    shutil.copytree(os.path.join(FIX, "hf/gpt2_tiny"), d)
    if st is not None:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(st)
    for name, data in files.items():
        with open(os.path.join(d, name.replace("__", ".")), "wb") as f:
            f.write(data)


def safetensors_cases():
    h, data = st_parts(os.path.join(FIX, "hf/gpt2_tiny/model.safetensors"))
    names = [k for k in h if k != "__metadata__"]
    first = names[0]

    def changed(name, **fields):
        g = json.loads(json.dumps(h))
        g[name].update(fields)
        return st_bytes(g, data)

    good = st_bytes(h, data)
    hf_folder("st_header_len_huge", patch(good, 0, "<Q", len(good) + 100))
    hf_folder("st_too_short", b"\x10\0\0")
    text = json.dumps(h).encode()
    hf_folder("st_header_not_json", st_bytes(b"{" + b"x" * (len(text) - 1), data))
    hf_folder("st_header_not_object", st_bytes(b"[1, 2, 3]", data))
    hf_folder("st_dtype_unknown", changed(first, dtype="F9"))
    hf_folder("st_shape_mismatch", changed(first, shape=[2, 2]))
    hf_folder("st_negative_dim", changed(first, shape=[-192]))
    end = h[first]["data_offsets"][1]
    hf_folder("st_offsets_out_of_range", changed(first, data_offsets=[len(data) - 10, len(data) + end - 10]))
    hf_folder("st_offsets_reversed", changed(first, data_offsets=[end, 0]))
    hf_folder("st_offsets_not_pair", changed(first, data_offsets=[0]))
    # two tensors of the same shape on the same bytes
    same = [k for k in names if h[k]["shape"] == h[names[2]]["shape"] and k != names[2]]
    g = json.loads(json.dumps(h))
    g[same[0]]["data_offsets"] = list(h[names[2]]["data_offsets"])
    hf_folder("st_offsets_overlap", st_bytes(g, data))
    # the same tensor twice in the header (JSON with a repeated key)
    dup = text[:-1] + b", " + json.dumps({first: h[first]}).encode()[1:]
    hf_folder("st_duplicate_tensor", st_bytes(dup, data))
    # config.json problems in the same folder
    hf_folder("hf_config_not_json", config__json=b'{"model_type": "gpt2", ')
    cfg = json.load(open(os.path.join(FIX, "hf/gpt2_tiny/config.json")))
    cfg["model_type"] = "bert"
    hf_folder("hf_config_bert", config__json=json.dumps(cfg).encode())
    cfg["model_type"] = "gpt2"
    cfg["n_layer"] = -2
    hf_folder("hf_config_negative_layers", config__json=json.dumps(cfg).encode())
    # its vocab.json with an id that is text
    voc = json.load(open(os.path.join(FIX, "hf/gpt2_tiny/vocab.json")))
    voc["!"] = "one"
    hf_folder("hf_vocab_wrong_type", vocab__json=json.dumps(voc).encode())
    # a standalone file for `hone inspect`
    write("st_inspect_not_json.safetensors", st_bytes(b"{" + b"x" * 40, data))


# ---- tokenizer files ----


def tokenizer_cases():
    voc = open(os.path.join(FIX, "hf/gpt2_tiny/vocab.json"), "rb").read()
    merges = open(os.path.join(FIX, "hf/gpt2_tiny/merges.txt"), "rb").read()
    write("good_encoder.json", voc)
    write("good_vocab.bpe", merges)
    write("enc_not_json.json", voc[: len(voc) // 2])
    write("enc_array.json", b'["a", "b"]')
    v = json.loads(voc)
    v["!"] = [1]
    write("enc_id_not_number.json", json.dumps(v).encode())
    v = json.loads(voc)
    v["!"] = 1.5
    write("enc_id_fraction.json", json.dumps(v).encode())
    lines = merges.split(b"\n")
    write("bpe_one_token_line.bpe", b"\n".join(lines[:5] + [b"abc"] + lines[5:]))
    write("bpe_unknown_token.bpe", b"\n".join(lines[:5] + [b"h \xe2\x82\xac\xe2\x82\xac"] + lines[5:]))
    # tokenizer.json of the tiny Llama folder
    tj = json.load(open(os.path.join(FIX, "hf/llama_tiny/tokenizer.json")))

    def llama_folder(case, tok):
        d = os.path.join(OUT, case)
        shutil.copytree(os.path.join(FIX, "hf/llama_tiny"), d)
        with open(os.path.join(d, "tokenizer.json"), "wb") as f:
            f.write(tok if isinstance(tok, bytes) else json.dumps(tok).encode())

    t = json.loads(json.dumps(tj))
    t["model"]["type"] = "WordPiece"
    llama_folder("tokjson_model_wordpiece", t)
    t = json.loads(json.dumps(tj))
    del t["model"]["vocab"]
    llama_folder("tokjson_no_vocab", t)
    t = json.loads(json.dumps(tj))
    t["model"]["merges"] = 7
    llama_folder("tokjson_merges_not_array", t)
    llama_folder("tokjson_not_json", json.dumps(tj).encode()[:-50])


# ---- token shards (llm.c's format: 256 int32 header, then uint16 ids) ----


def shard(magic=20240520, version=1, count=None, ids=None, cut=None):
    ids = ids if ids is not None else [i % 200 for i in range(4000)]
    hdr = [0] * 256
    hdr[0], hdr[1], hdr[2] = magic, version, len(ids) if count is None else count
    b = struct.pack("<256i", *hdr) + struct.pack(f"<{len(ids)}H", *ids)
    return b[:cut] if cut else b


def shard_cases():
    os.makedirs(os.path.join(OUT, "shards"), exist_ok=True)
    s = lambda name, b: write(os.path.join("shards", name), b)  # noqa: E731
    s("shard_bad_magic.bin", shard(magic=1234))
    s("shard_bad_version.bin", shard(version=9))
    s("shard_truncated.bin", shard(cut=1024 + 3000))
    s("shard_negative_count.bin", shard(count=-5))
    s("shard_header_only.bin", shard()[:600])
    s("shard_token_ge_vocab.bin", shard(ids=[5000] * 4000))
    s("shard_one_token_ge_vocab.bin", shard(ids=[i % 200 for i in range(1000)] + [5000] + [7] * 3000))


# ---- checkpoints ----


def ckpt_cases():
    good = open(GOOD, "rb").read()
    b = bytearray(good)
    b[len(b) // 2] ^= 0x40
    write("ckpt_byte_flipped.h5", bytes(b))
    b = bytearray(good)
    b[40] = ord("0") if b[40] != ord("0") else ord("1")  # a digit of the seal's hex digest
    write("ckpt_seal_edited.h5", bytes(b))
    write("ckpt_truncated.h5", good[: len(good) * 2 // 3])
    write("ckpt_appended.h5", good + b"\0" * 100)
    write("ckpt_not_hdf5.h5", b"this is not a checkpoint\n" * 40)
    write("ckpt_empty.h5", b"")
    write("ckpt_seal_only.h5", good[:512])
    import h5py  # a copy made by another writer: no seal

    with h5py.File(GOOD, "r") as src, h5py.File(os.path.join(OUT, "ckpt_no_seal.h5"), "w") as dst:
        for key in src:
            src.copy(key, dst)
        for k, v in src.attrs.items():
            dst.attrs[k] = v


def main():
    os.makedirs(OUT, exist_ok=True)
    gguf_cases()
    safetensors_cases()
    tokenizer_cases()
    shard_cases()
    ckpt_cases()


if __name__ == "__main__":
    main()
