#!/usr/bin/env python3
"""Writes the GPT-2 tokenizer fixture that tests/unit/test_tokenizer.c compares against.

Interpreter: the default pyenv `python3`, with Hugging Face `tokenizers` installed
(`pip install tokenizers`). The reference is HF's BPE model built from the SAME local
encoder.json and vocab.bpe that hone loads, with a ByteLevel pre-tokenizer
(add_prefix_space=False) and ByteLevel decoder; nothing is downloaded. "<|endoftext|>" is not
registered as a special token, so in text it is encoded as ordinary text, as hone does.

Text: a fixed slice of the Jargon File (Debian jargon-text) and of the Linux fortunes
(Debian fortunes), plus hand-written lines for non-ASCII, digits, contractions and whitespace.

Writes under tests/fixtures/tokenizer/:
  gpt2_lines.txt     the text, one line each, UTF-8, "\n" after every line
  gpt2_ids.txt       the ids of each line encoded on its own, one line of ids per text line
  gpt2_text_ids.txt  the ids of the whole of gpt2_lines.txt encoded as one text, on one line

Usage: python3 scripts/make_tokenizer_fixture.py [GPT2_DIR]
GPT2_DIR holds encoder.json and vocab.bpe (default: ../shared/data/gpt2 beside the repo).
Rerunning it writes the same bytes.
"""
import gzip
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JARGON = "/usr/share/doc/jargon-text/jargon.txt.gz"
FORTUNES = "/usr/share/games/fortunes/linux"

HAND_LINES = [
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


def jargon_lines():
    with gzip.open(JARGON, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    # running prose (with blank lines between paragraphs) and a box-drawing table
    return lines[899:1199] + lines[1994:2014]


def fortune_lines():
    with open(FORTUNES, encoding="utf-8", errors="strict") as f:
        return f.read().split("\n")[:80]


def main():
    gpt2_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "data", "gpt2")
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

    lines = jargon_lines() + fortune_lines() + HAND_LINES
    assert len(lines) >= 250 and all("\n" not in l and "\r" not in l for l in lines)
    text = "".join(l + "\n" for l in lines)

    ids = [tok.encode(l).ids for l in lines]
    text_ids = tok.encode(text).ids
    for l, i in zip(lines, ids):
        assert tok.decode(i) == l, l
    assert tok.decode(text_ids) == text
    assert vocab["<|endoftext|>"] not in text_ids

    out = os.path.join(REPO, "tests", "fixtures", "tokenizer")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gpt2_lines.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    with open(os.path.join(out, "gpt2_ids.txt"), "w", newline="\n") as f:
        f.write("".join(" ".join(map(str, i)) + "\n" for i in ids))
    with open(os.path.join(out, "gpt2_text_ids.txt"), "w", newline="\n") as f:
        f.write(" ".join(map(str, text_ids)) + "\n")
    print(f"{len(lines)} lines, {len(text.encode())} bytes, {len(text_ids)} tokens -> {out}")


if __name__ == "__main__":
    main()
