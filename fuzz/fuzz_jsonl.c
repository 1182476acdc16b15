/*
 * Fuzz target: every JSONL reader. The first byte picks one:
 *   0  instruction examples, line by line (data/instruct.c hn_instruct_encode), with the
 *      byte tokenizer or a small BPE one, template chatml / llama2 / plain
 *   1  `hone prepare --instruct` on the input as a JSONL file (data/prepare.c)
 *   2  eval mc examples (eval/tasks.c)      3  eval gen examples
 *   4  an eval prompt template file          5  a prepared folder's meta.json
 * The eval tasks are asked for 64 shots, which no input here can supply (it is cut to 64
 * lines), so they parse every example and stop before they would need a model.
 */
#include "data/instruct.h"
#include "data/prepare.h"
#include "eval/tasks.h"
#include "fuzz/fuzz_tok.h"

#ifndef FUZZ_FIXTURES
#define FUZZ_FIXTURES "tests/fixtures"
#endif

static HnTokenizer* bpe_tokenizer(void) {
    static HnTokenizer* tok;
    static int tried;
    if (tried) return tok;
    tried = 1;
    FILE* f = fopen(FUZZ_FIXTURES "/hf/llama_tiny/tokenizer.json", "rb");
    if (!f) return NULL;
    char buf[1 << 15];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    tok = hn_tokenizer_from_json(buf, n, "llama_tiny/tokenizer.json");
    return tok;
}

static void instruct(const uint8_t* data, size_t size, unsigned how) {
    static const char* names[3] = {"chatml", "llama2", "plain"};
    HnTokenizer* byte = hn_tokenizer_byte();
    const HnTokenizer* tok = (how & 4) && bpe_tokenizer() ? bpe_tokenizer() : byte;
    HnChatTemplate t;
    FUZZ_CHECK(hn_chat_template_choose(tok, names[how % 3], &t) == 0);
    HnTokens ids = {0}, mask = {0};
    for (size_t at = 0; at < size;) {
        const uint8_t* nl = memchr(data + at, '\n', size - at);
        size_t n = nl ? (size_t)(nl - data - at) : size - at;
        size_t before = ids.n;
        int rc = hn_instruct_encode(&t, tok, (const char*)data + at, n, &ids, &mask);
        FUZZ_CHECK(ids.n == mask.n);
        if (rc != 0) FUZZ_CHECK(ids.n == before);
        for (size_t i = before; i < ids.n; i++) {
            FUZZ_CHECK(mask.ids[i] == 0 || mask.ids[i] == 1);
            FUZZ_CHECK(ids.ids[i] >= 0 && ids.ids[i] < hn_tokenizer_vocab_size(tok));
        }
        at += n + 1;
    }
    hn_tokens_free(&ids);
    hn_tokens_free(&mask);
    hn_chat_template_free(&t);
    hn_tokenizer_free(byte);
}

static void prepare(const uint8_t* data, size_t size, unsigned how) {
    static const char* names[4] = {NULL, "chatml", "llama2", "plain"};
    const char* in = fuzz_write(0, "in.jsonl", data, size);
    const char* inputs[1] = {in};
    HnPrepareOptions opt = {.inputs = inputs,
                            .ninputs = 1,
                            .out_dir = fuzz_path(1, "prep"),
                            .tokenizer = "byte",
                            .val_fraction = (how & 16) ? 0.5 : 0.1,
                            .shard_tokens = 1024,
                            .seed = how,
                            .instruct = 1,
                            .chat_template = names[how % 4],
                            .skip_bad = (how >> 2) & 1};
    HnPrepareStats st;
    (void)hn_prepare(&opt, &st);
}

/* the input cut after its 64th line, so that 64 shots always need one example more */
static size_t lines64(const uint8_t* data, size_t size) {
    size_t lines = 0;
    for (size_t i = 0; i < size; i++)
        if (data[i] == '\n' && ++lines == 64) return i;
    return size;
}

static void eval_task(const uint8_t* data, size_t size, const char* task, int template_input) {
    static const char one[] = "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 1, "
                              "\"prompt\": \"p\", \"reference\": \"r\"}\n";
    HnTokenizer* byte = hn_tokenizer_byte();
    HnEvalOptions opt = {.task = task, .shots = 64, .max_tokens = 4};
    if (template_input) {
        opt.template_path = fuzz_write(1, "template.txt", data, size);
        opt.data = fuzz_write(0, "in.jsonl", one, sizeof one - 1);
    } else {
        opt.data = fuzz_write(0, "in.jsonl", data, lines64(data, size));
    }
    HnEvalResult r;
    FUZZ_CHECK(hn_eval_run(NULL, byte, &opt, &r) != 0);
    hn_tokenizer_free(byte);
}

static void meta(const uint8_t* data, size_t size) {
    fuzz_write(0, "meta.json", data, size);
    HnDataMeta m;
    if (hn_data_meta_read(fuzz_dir(), &m) == 0) {
        FUZZ_CHECK(memchr(m.tokenizer, 0, sizeof m.tokenizer) != NULL);
        FUZZ_CHECK(memchr(m.encoder, 0, sizeof m.encoder) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    unsigned mode = data[0] % 6, how = data[1];
    data += 2;
    size -= 2;
    switch (mode) {
    case 0:
        instruct(data, size, how);
        break;
    case 1:
        prepare(data, size, how);
        break;
    case 2:
        eval_task(data, size, "mc", 0);
        break;
    case 3:
        eval_task(data, size, "gen", 0);
        break;
    case 4:
        eval_task(data, size, (how & 1) ? "gen" : "mc", 1);
        break;
    default:
        meta(data, size);
        break;
    }
    return 0;
}
