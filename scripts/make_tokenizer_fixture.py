#!/usr/bin/python3
"""Writes the tokenizer fixtures that tests/unit/test_tokenizer.c and
tests/unit/test_tokenizer_models.c compare against.

Interpreter: Debian's /usr/bin/python3, which has the `gguf` package (0.10) and Hugging Face
`tokenizers` (0.19.1 and 0.20.3 were both seen there and write the same bytes); the pyenv
`python3` has no `gguf`. Nothing is downloaded.

References (each one is Hugging Face tokenizers, never hone):
  GPT-2    HF's BPE model built from the SAME local encoder.json and vocab.bpe that hone loads,
           with a ByteLevel pre-tokenizer (add_prefix_space=False) and ByteLevel decoder.
           "<|endoftext|>" is not registered as a special token, so in text it is encoded as
           ordinary text, as hn_tokenizer_encode does.
  SmolLM2  SmolLM2's own tokenizer rebuilt from the GGUF's tokenizer.ggml.tokens, .merges and
           .token_type (read with the gguf package): BPE(vocab, merges), pre-tokenizer
           Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)], decoder
           ByteLevel, as SmolLM2's tokenizer.json on the Hub has it. Two of them:
             plain    no added tokens: special strings in text are ordinary text
                      (what hn_tokenizer_encode must give);
             special  the tokens of token_type 3 (control) added as special tokens, as in
                      SmolLM2's tokenizer.json (what hn_tokenizer_encode_special must give).
           transformers' own GGUF conversion is deliberately not used: it differs from
           SmolLM2's real tokenizer (pre-tokenizer, bos/eos handling).

Text: GPT-2's fixture keeps its slice of the Jargon File and the Linux fortunes and hand-written
lines; both tokenizers also get >= 1000 lines of raw roff from Debian's man pages
(/usr/share/man/man3, packages manpages and manpages-dev), full of digits and punctuation, and
SmolLM2 hand-written lines with non-ASCII, digit runs and special-token strings.

Writes under tests/fixtures/tokenizer/ (every text file is UTF-8 with "\n" after each line):
  gpt2_lines.txt       GPT-2 text, one line each
  gpt2_ids.txt         ids of each line encoded on its own, one line of ids per text line
  gpt2_text_ids.txt    ids of the whole of gpt2_lines.txt encoded as one text, on one line
  man_lines.txt        man-page lines (shared by both tokenizers)
  gpt2_man_ids.txt     GPT-2 ids of each man_lines.txt line
  smollm_lines.txt     SmolLM2's hand-written lines
  smollm_ids.txt       SmolLM2 plain ids of each line of man_lines.txt then smollm_lines.txt
  smollm_special_ids.txt  SmolLM2 special ids of each line of smollm_lines.txt
  smollm_text_ids.txt  SmolLM2 special ids of the whole of smollm_lines.txt as one text (the
                       lines hold "<|im_start|>user" then "hi<|im_end|>", so the text holds a
                       chat turn with its newline)
  bad_*.gguf, small.gguf  tiny GGUF tokenizers, one well-formed and each of the others broken
                       in one way (see SMALL_VARIANTS)

Usage: /usr/bin/python3 scripts/make_tokenizer_fixture.py [GPT2_DIR [SMOLLM2_GGUF]]
  GPT2_DIR holds encoder.json and vocab.bpe (default: ../shared/data/gpt2 beside the repo);
  SMOLLM2_GGUF defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf in the repo.
  --check-json PATH: load PATH (a tokenizer.json that hone wrote) with HF tokenizers and check
  it gives the fixture's SmolLM2 ids, or GPT-2's if its pre-tokenizer is ByteLevel alone.
Rerunning it writes the same bytes.
"""
import glob
import gzip
import json
import os
import sys

import gguf
import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "tokenizer")
JARGON = "/usr/share/doc/jargon-text/jargon.txt.gz"
FORTUNES = "/usr/share/games/fortunes/linux"
MAN3 = "/usr/share/man/man3"

GPT2_HAND_LINES = [
    "I'm sure it's what they'd've wanted; we'll see, won't we? You're right, I've LEFT.",
    "Café crème, naïve façade, Ångström, Straße, Ελληνικά, русский текст.",
    "日本語のテキストと中文文本，混在する。한국어도 있습니다.",
    "Emoji: 🙂🚀 👩‍💻 and flags 🇫🇷🇯🇵, plus ✓ ✗ → ∞.",
    "Numbers: 3.14159, 2,718,281,828, 1e-10, 0x7fff, 42nd, ٣٤٥ and ⅷ.",
    "Multiple   spaces    here,\ttabs\t\tand   trailing spaces   ",
    "   leading spaces and a lone tab\t",
    "<|endoftext|> must stay text: a<|endoftext|>b <|endoftext|><|endoftext|>",
    "Non-breaking\u00a0space, ideographic\u3000space, thin\u2009space.",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'x ''' \"quoted\" `ticks`",
    "Punctuation!!! ...??? --- ___ *** ### $$$ %%% &&& @@@ ^^^ ~~~ |||",
    "Mixed: abc123def 123abc  456   789\t\t10",
    "\t",
    "",
    "      ",
    "x",
]

SMOLLM_HAND_LINES = [
    "12345",
    "3.14",
    "v2.0.1",
    "pi is 3.14159265358979 and e is 2.71828; 1,000,000 and 0x7fff and 1e-10",
    "   42   007  ",
    "a 1 b  22 c   333",
    "Other numerals: ½ ¾ ² ³ ⅷ Ⅻ ٣٤٥ ४२ ௰ ① 𝟙𝟚 — each one is numeric",
    "Café crème, naïve façade, Ångström, Straße, Ελληνικά, русский текст.",
    "日本語のテキストと中文文本，混在する。한국어도 있습니다。第3章と２０２４年",
    "Emoji: 🙂🚀 👩‍💻 and flags 🇫🇷🇯🇵, plus ✓ ✗ → ∞, 1️⃣2️⃣",
    "I'm sure it's what they'd've wanted; we'll see, won't we?",
    "Multiple   spaces    here,\ttabs\t\tand   trailing spaces   ",
    "<|im_start|>user",
    "hi<|im_end|>",
    "<|im_start|>assistant",
    "Hello! 2 + 2 = 4.<|im_end|>",
    "<|endoftext|>x<|endoftext|> <|endoftext|><|endoftext|>",
    "<repo_name>hone<file_sep>src/main.c<filename>x<gh_stars>100",
    "<|im_start|<|im_end| <|im_end||> <<|im_start|>> |im_end|>",
    "<jupyter_start><jupyter_code>print(1)<jupyter_output>1<empty_output>",
    "",
    "\t",
    "x",
]

# (file, what breaks); see small_gguf()
SMALL_VARIANTS = [
    ("small.gguf", None),
    ("bad_count.gguf", "token_type has one entry fewer than tokens"),
    ("bad_missing_byte.gguf", "the vocabulary has no token for byte 'A'"),
    ("bad_merge_unknown.gguf", "a merge 'b a' makes 'ba', which is not a token"),
    ("bad_merge_form.gguf", "a merge 'ab' without its space"),
    ("bad_pre.gguf", "pre-tokenizer 'llama-bpe-xyz'"),
    ("bad_model.gguf", "tokenizer.ggml.model 'llama'"),
    ("bad_eos.gguf", "eos_token_id 9999 out of range"),
    ("bad_type.gguf", "token_type 4 (user-defined)"),
]


def bytes_to_unicode():
    """GPT-2's byte alphabet: byte -> the character that spells it."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def jargon_lines():
    with gzip.open(JARGON, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    # running prose (with blank lines between paragraphs) and a box-drawing table
    return lines[899:1199] + lines[1994:2014]


def fortune_lines():
    with open(FORTUNES, encoding="utf-8", errors="strict") as f:
        return f.read().split("\n")[:80]


def man_lines():
    """Lines 20..45 of every 40th page of man3 (past the copyright header), UTF-8 pages only."""
    lines = []
    for path in sorted(glob.glob(os.path.join(MAN3, "*.3.gz")))[::40]:
        try:
            with gzip.open(path, "rt", encoding="utf-8", errors="strict") as f:
                page = f.read().split("\n")
        except (UnicodeDecodeError, OSError):
            continue
        lines += [l for l in page[20:45] if "\r" not in l]
    return lines


def gpt2_tokenizer(gpt2_dir):
    with open(os.path.join(gpt2_dir, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    merges = []
    with open(os.path.join(gpt2_dir, "vocab.bpe"), encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if line and not line.startswith("#version"):
                left, right = line.split(" ")
                merges.append((left, right))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok, vocab["<|endoftext|>"]


def gguf_array(reader, key):
    field = reader.fields[key]
    if field.types[-1] == gguf.GGUFValueType.STRING:
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    return [int(field.parts[i][0]) for i in field.data]


def smollm_tokenizers(gguf_path):
    """SmolLM2's tokenizer from the GGUF's vocabulary: (plain, special, special ids)."""
    reader = gguf.GGUFReader(gguf_path)
    tokens = gguf_array(reader, "tokenizer.ggml.tokens")
    types = gguf_array(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in gguf_array(reader, "tokenizer.ggml.merges")]
    assert len(tokens) == len(types) == 49152 and len(merges) == 48900
    assert set(types) == {1, 3}
    vocab = {t: i for i, t in enumerate(tokens)}
    specials = [i for i, y in enumerate(types) if y == 3]

    def build(with_specials):
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
        tok.decoder = decoders.ByteLevel()
        if with_specials:
            tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in specials])
        return tok

    special = build(True)
    assert [special.token_to_id(tokens[i]) for i in specials] == specials
    return build(False), special, specials


def ids_text(rows):
    return "".join(" ".join(map(str, r)) + "\n" for r in rows)


def write(name, text):
    with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def lines_text(lines):
    assert all("\n" not in l and "\r" not in l for l in lines)
    return "".join(l + "\n" for l in lines)


def encode_lines(tok, lines, forbidden):
    rows = [tok.encode(l, add_special_tokens=False).ids for l in lines]
    for l, r in zip(lines, rows):
        assert tok.decode(r, skip_special_tokens=False) == l, l
        assert not forbidden & set(r), l
    return rows


def small_gguf(path, breaks):
    """A tiny SmolLM2-like tokenizer: 3 control tokens, the 256 bytes, "ab" and "Ġa"."""
    alphabet = bytes_to_unicode()
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens += [alphabet[b] for b in range(256) if not (breaks == "bad_missing_byte.gguf" and b == ord("A"))]
    tokens += ["ab", "Ġa"]
    types = [3, 3, 3] + [1] * (len(tokens) - 3)
    merges = ["a b", "Ġ a"]
    model, pre, eos = "gpt2", "smollm", 2
    if breaks == "bad_count.gguf":
        types = types[:-1]
    elif breaks == "bad_merge_unknown.gguf":
        merges.append("b a")
    elif breaks == "bad_merge_form.gguf":
        merges.append("ab")
    elif breaks == "bad_pre.gguf":
        pre = "llama-bpe-xyz"
    elif breaks == "bad_model.gguf":
        model = "llama"
    elif breaks == "bad_eos.gguf":
        eos = 9999
    elif breaks == "bad_type.gguf":
        types[-1] = 4
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(eos)
    w.add_add_bos_token(False)
    w.add_chat_template("{{ messages }}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_ids(name):
    with open(os.path.join(OUT, name)) as f:
        return [[int(x) for x in l.split()] for l in f.read().split("\n")[:-1]]


def read_lines(name):
    with open(os.path.join(OUT, name), encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def check_json(path):
    """HF tokenizers reading hone's tokenizer.json must give the fixture's ids. HF always cuts
    added tokens out of the text, so it is compared with the special-aware ids where a line
    holds a special string, and with the plain ids elsewhere."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tok = Tokenizer.from_str(text)
    specials = [a["content"] for a in json.loads(text)["added_tokens"]]
    man = read_lines("man_lines.txt")
    if json.loads(text)["pre_tokenizer"]["type"] == "ByteLevel":
        cases = list(zip(man, read_ids("gpt2_man_ids.txt")))
    else:
        hand = read_lines("smollm_lines.txt")
        plain = read_ids("smollm_ids.txt")
        cases = list(zip(man + hand, plain))
        cases = [(l, w) for l, w in cases if not any(s in l for s in specials)]
        cases += list(zip(hand, read_ids("smollm_special_ids.txt")))
    same = sum(tok.encode(l, add_special_tokens=False).ids == w for l, w in cases)
    print(f"{path}: HF tokenizers {tokenizers.__version__} gives the fixture's ids on {same} of {len(cases)} lines")
    return same == len(cases)


def main():
    args = sys.argv[1:]
    gpt2_dir = os.path.join(REPO, "..", "shared", "data", "gpt2")
    if args and args[0] == "--check-json":
        sys.exit(0 if check_json(args[1]) else 1)
    if args:
        gpt2_dir = args[0]
    gguf_path = args[1] if len(args) > 1 else os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    os.makedirs(OUT, exist_ok=True)

    gpt2, eos = gpt2_tokenizer(gpt2_dir)
    lines = jargon_lines() + fortune_lines() + GPT2_HAND_LINES
    text = lines_text(lines)
    text_ids = gpt2.encode(text).ids
    assert gpt2.decode(text_ids) == text and eos not in text_ids
    write("gpt2_lines.txt", text)
    write("gpt2_ids.txt", ids_text(encode_lines(gpt2, lines, {eos})))
    write("gpt2_text_ids.txt", " ".join(map(str, text_ids)) + "\n")

    man = man_lines()
    assert len(man) >= 1000, len(man)
    write("man_lines.txt", lines_text(man))
    write("gpt2_man_ids.txt", ids_text(encode_lines(gpt2, man, {eos})))

    plain, special, special_ids = smollm_tokenizers(gguf_path)
    write("smollm_lines.txt", lines_text(SMOLLM_HAND_LINES))
    write("smollm_ids.txt", ids_text(encode_lines(plain, man + SMOLLM_HAND_LINES, set(special_ids))))
    write("smollm_special_ids.txt", ids_text(encode_lines(special, SMOLLM_HAND_LINES, set())))
    chat = lines_text(SMOLLM_HAND_LINES)
    chat_ids = special.encode(chat, add_special_tokens=False).ids
    assert special.decode(chat_ids, skip_special_tokens=False) == chat
    assert "<|im_start|>user\nhi<|im_end|>" in chat
    write("smollm_text_ids.txt", " ".join(map(str, chat_ids)) + "\n")

    for name, breaks in SMALL_VARIANTS:
        small_gguf(os.path.join(OUT, name), name if breaks else None)
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT, "*")))
    print(f"GPT-2 {len(lines)} + {len(man)} lines, SmolLM2 {len(man)} + {len(SMOLLM_HAND_LINES)} lines; "
          f"{size} bytes in {OUT}")
    assert size < 500_000


if __name__ == "__main__":
    main()
