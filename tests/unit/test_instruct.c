/*
 * Instruction data at the token level: `hone prepare --instruct` (hn_prepare) on small JSONL
 * files, both example forms, with and without a system message. The shard's ids must be the
 * rendered conversation and its .mask must select exactly the assistant turns' tokens and
 * their end token; both are computed here independently, from the tokenizer's encoding of
 * the pieces (byte tokenizer with chatml, llama2 and plain; SmolLM2's real tokenizer with
 * the template recognised from the model, its default system message written out here).
 * The loader turns the mask into HN_IGNORE targets. Malformed lines are errors naming
 * FILE:LINE, or skipped with --skip-bad; unknown templates are refused.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/dataset.h"
#include "data/h5ckpt.h"
#include "data/instruct.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "kernels/ops.h"
#include "testing.h"

static char dir[1024];

static void write_text(const char* path, const char* text) {
    FILE* f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0, "cannot write %s", path);
    if (f) fclose(f);
}

/* a whole file after its 1024-byte header */
static unsigned char* read_body(const char* path, size_t* n) {
    FILE* f = fopen(path, "rb");
    *n = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 1024, SEEK_SET);
    unsigned char* buf = malloc(len > 1024 ? (size_t)(len - 1024) : 1);
    if (buf && len > 1024) *n = fread(buf, 1, (size_t)(len - 1024), f);
    fclose(f);
    return buf;
}

/* the ids and mask of DIR/train_000000.{bin,mask} */
static void read_prepared(const char* out, HnTokens* ids, HnTokens* mask) {
    char path[1300];
    size_t n, m;
    snprintf(path, sizeof path, "%s/train_000000.bin", out);
    unsigned char* b = read_body(path, &n);
    snprintf(path, sizeof path, "%s/train_000000.mask", out);
    unsigned char* k = read_body(path, &m);
    CHECK(b && k && m * 2 == n, "shard %zu bytes, mask %zu bytes", n, m);
    for (size_t i = 0; b && k && i < m; i++) {
        uint16_t v;
        memcpy(&v, b + 2 * i, 2);
        hn_tokens_push(ids, v);
        hn_tokens_push(mask, k[i]);
    }
    free(b);
    free(k);
}

/* the expectation, built piece by piece: text (encoded as ordinary text, or with specials
 * for template markers) with its counted flag */
typedef struct {
    const HnTokenizer* tok;
    HnTokens ids, mask;
} Expect;

static void piece(Expect* e, const char* s, int special, int counted) {
    size_t n0 = e->ids.n;
    if (special)
        hn_tokenizer_encode_special(e->tok, s, strlen(s), &e->ids);
    else
        hn_tokenizer_encode(e->tok, s, strlen(s), &e->ids);
    for (size_t i = n0; i < e->ids.n; i++)
        hn_tokens_push(&e->mask, counted);
}
static void id(Expect* e, int v, int counted) {
    hn_tokens_push(&e->ids, v);
    hn_tokens_push(&e->mask, counted);
}

static int same(const HnTokens* a, const HnTokens* b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->ids, b->ids, a->n * sizeof(int)) == 0);
}

static void first_difference(const char* what, const HnTokens* a, const HnTokens* b) {
    size_t i = 0;
    while (i < a->n && i < b->n && a->ids[i] == b->ids[i])
        i++;
    fprintf(stderr, "  %s: lengths %zu vs %zu, first difference at %zu (%d vs %d)\n", what, a->n,
            b->n, i, i < a->n ? a->ids[i] : -9, i < b->n ? b->ids[i] : -9);
}

/* the counted tokens of a (ids, mask) pair, in order */
static HnTokens counted(const HnTokens* ids, const HnTokens* mask) {
    HnTokens c = {0};
    for (size_t i = 0; i < ids->n; i++)
        if (mask->ids[i]) hn_tokens_push(&c, ids->ids[i]);
    return c;
}

static int prepare(const char* jsonl, const char* out, const char* tokenizer, const char* template,
                   int skip_bad, HnPrepareStats* st) {
    const char* inputs[1] = {jsonl};
    HnPrepareOptions o = {.inputs = inputs,
                          .ninputs = 1,
                          .out_dir = out,
                          .tokenizer = tokenizer,
                          .val_fraction = 0,
                          .shard_tokens = 1 << 20,
                          .seed = 1,
                          .instruct = 1,
                          .chat_template = template,
                          .skip_bad = skip_bad};
    return hn_prepare(&o, st);
}

/* prepare JSONL text and compare with the expectation; then check the loader's targets */
static void check_prepared(const char* name, const char* jsonl_text, const char* tokenizer,
                           const char* template, Expect* e, int vocab) {
    char jsonl[1200], out[1200], pat[1300];
    snprintf(jsonl, sizeof jsonl, "%s/%s.jsonl", dir, name);
    snprintf(out, sizeof out, "%s/%s", dir, name);
    write_text(jsonl, jsonl_text);
    HnPrepareStats st;
    CHECK(prepare(jsonl, out, tokenizer, template, 0, &st) == HN_OK, "%s: %s", name,
          hn_error_message());
    HnTokens ids = {0}, mask = {0};
    read_prepared(out, &ids, &mask);
    CHECK(same(&ids, &e->ids), "%s: the shard's ids are not the rendered conversation", name);
    if (!same(&ids, &e->ids)) first_difference("ids", &ids, &e->ids);
    CHECK(same(&mask, &e->mask), "%s: the mask is not exactly the responses + end tokens", name);
    if (!same(&mask, &e->mask)) first_difference("mask", &mask, &e->mask);
    HnTokens c = counted(&ids, &mask), ce = counted(&e->ids, &e->mask);
    CHECK(same(&c, &ce) && st.train_targets == ce.n, "%s: counted tokens differ", name);

    /* the loader: every window's target is the next token where its mask byte is 1 */
    enum { T = 8 };
    snprintf(pat, sizeof pat, "%s/train_*.bin", out);
    HnLoader ld;
    CHECK(hn_loader_open(&ld, pat, 1, T, vocab, 0, 1) == HN_OK, "%s", hn_error_message());
    size_t nw = hn_loader_windows(&ld), wrong = 0, kept = 0;
    for (size_t w = 0; w < nw; w++) {
        int tok[T], tgt[T];
        if (hn_loader_next(&ld, tok, tgt) != HN_OK) {
            wrong++;
            break;
        }
        for (int t = 0; t < T; t++) {
            size_t p = w * T + (size_t)t + 1;
            int want = mask.ids[p] ? ids.ids[p] : HN_IGNORE;
            wrong += tok[t] != ids.ids[p - 1] || tgt[t] != want;
            kept += tgt[t] != HN_IGNORE;
        }
    }
    hn_loader_close(&ld);
    CHECK(wrong == 0 && kept > 0, "%s: %zu loader targets wrong (%zu counted)", name, wrong, kept);
    hn_tokens_free(&c);
    hn_tokens_free(&ce);
    hn_tokens_free(&ids);
    hn_tokens_free(&mask);
    hn_tokens_free(&e->ids);
    hn_tokens_free(&e->mask);
}

static const char EXAMPLES[] =
    "{\"prompt\": \"What is 2+2?\", \"response\": \"4\"}\n"
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", "
    "\"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": "
    "\"user\", \"content\": \"Say 12 words\"}, {\"role\": \"assistant\", \"content\": \"One two "
    "three, 123.\"}]}\n"
    "\n"
    "{\"messages\": [{\"role\": \"user\", \"content\": \"Name a colour\"}, {\"role\": "
    "\"assistant\", \"content\": \"Blue <|im_end|> is one\"}]}\n";

/* the three examples as ChatML, each after the document start */
static void expect_chatml(Expect* e, int start, const char* default_system) {
    static const char* const conv[3][5][2] = {
        {{"user", "What is 2+2?"}, {"assistant", "4"}},
        {{"system", "Be brief."},
         {"user", "Hi there"},
         {"assistant", "Hello!"},
         {"user", "Say 12 words"},
         {"assistant", "One two three, 123."}},
        {{"user", "Name a colour"}, {"assistant", "Blue <|im_end|> is one"}},
    };
    for (int x = 0; x < 3; x++) {
        if (start >= 0) id(e, start, 0);
        if (default_system && strcmp(conv[x][0][0], "system") != 0) {
            piece(e, "<|im_start|>", 1, 0);
            piece(e, "system\n", 0, 0);
            piece(e, default_system, 0, 0);
            piece(e, "<|im_end|>", 1, 0);
            piece(e, "\n", 0, 0);
        }
        for (int k = 0; k < 5 && conv[x][k][0]; k++) {
            int a = strcmp(conv[x][k][0], "assistant") == 0;
            char head[64];
            snprintf(head, sizeof head, "%s\n", conv[x][k][0]);
            piece(e, "<|im_start|>", 1, 0);
            piece(e, head, 0, 0);
            piece(e, conv[x][k][1], 0, a); /* contents are never special */
            piece(e, "<|im_end|>", 1, a);
            piece(e, "\n", 0, 0);
        }
    }
}

static int warned_lines[8], nwarned;
static void on_warn(void* ctx, const char* msg) {
    (void)ctx;
    const char* p = strstr(msg, ".jsonl:");
    if (p && nwarned < 8) warned_lines[nwarned++] = atoi(p + 7);
}

static void test_bad_lines(void) {
    char jsonl[1200], out[1200];
    snprintf(jsonl, sizeof jsonl, "%s/bad.jsonl", dir);
    snprintf(out, sizeof out, "%s/bad", dir);
    write_text(jsonl, "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                      "{\"prompt\": \"a\", \"response\": \n"
                      "\n"
                      "{\"messages\": [{\"role\": \"user\", \"content\": \"only a question\"}]}\n"
                      "[1, 2]\n"
                      "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n"
                      "{\"prompt\": \"c\", \"response\": \"d\"}\n");
    HnPrepareStats st;
    CHECK(prepare(jsonl, out, "byte", "chatml", 0, &st) == HN_ERR &&
              strstr(hn_error_message(), "bad.jsonl:2: not valid JSON") &&
              strstr(hn_error_message(), "--skip-bad"),
          "a malformed line is fatal, named by its line: %s", hn_error_message());
    const char* inputs[1] = {jsonl};
    HnPrepareOptions o = {.inputs = inputs,
                          .ninputs = 1,
                          .out_dir = out,
                          .tokenizer = "byte",
                          .val_fraction = 0,
                          .shard_tokens = 1 << 20,
                          .instruct = 1,
                          .chat_template = "chatml",
                          .skip_bad = 1,
                          .warn = on_warn};
    CHECK(hn_prepare(&o, &st) == HN_OK, "%s", hn_error_message());
    CHECK(st.skipped == 4 && st.documents == 2, "skipped %d, examples %d", st.skipped,
          st.documents);
    CHECK(nwarned == 4 && warned_lines[0] == 2 && warned_lines[1] == 4 && warned_lines[2] == 5 &&
              warned_lines[3] == 6,
          "the skipped lines are reported by number (%d: %d %d %d %d)", nwarned, warned_lines[0],
          warned_lines[1], warned_lines[2], warned_lines[3]);
    write_text(jsonl, "not json\n");
    CHECK(prepare(jsonl, out, "byte", "chatml", 1, &st) == HN_ERR &&
              strstr(hn_error_message(), "no examples"),
          "nothing usable is an error: %s", hn_error_message());
}

static HnTokenizer* smollm2_tokenizer(const char* path) {
    if (access(path, R_OK) != 0) return NULL;
    char* text = NULL;
    HnH5* f = hn_ckpt_open(path, &text);
    free(text);
    HnTokenizer* tok = NULL;
    if (f) {
        hn_ckpt_tokenizer(f, &tok);
        hn_h5_close(f);
    }
    return tok;
}

/* SmolLM2's tokenizer with another chat template text */
static HnTokenizer* with_template(const HnTokenizer* tok, const char* tpl) {
    char* json = hn_tokenizer_to_json(tok);
    const char* key = "\"chat_template\":";
    char* at = json ? strstr(json, key) : NULL;
    if (!at) {
        free(json);
        return NULL;
    }
    /* replace the string value after the key */
    char* v = strchr(at + strlen(key), '"');
    char* e = v + 1;
    while (*e && !(*e == '"' && e[-1] != '\\'))
        e++;
    size_t n = strlen(json) + strlen(tpl) + 8;
    char* out = malloc(n);
    snprintf(out, n, "%.*s\"%s\"%s", (int)(v - json), json, tpl, e + 1);
    HnTokenizer* t = hn_tokenizer_from_json(out, strlen(out), "edited");
    free(json);
    free(out);
    return t;
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/instruct", hn_test_env("HONE_TEST_TMP"));
    if (hn_mkdirs(dir) != HN_OK) return 1;
    HnTokenizer* byte = hn_tokenizer_byte();
    const int EOT = hn_tokenizer_eos(byte);

    /* byte tokenizer, chatml named: markers are plain bytes; no default system message */
    Expect e = {byte, {0}, {0}};
    expect_chatml(&e, EOT, NULL);
    check_prepared("byte_chatml", EXAMPLES, "byte", "chatml", &e, 257);

    /* byte tokenizer, llama2: HF's Llama-2-chat layout, contents stripped */
    e = (Expect){byte, {0}, {0}};
    id(&e, EOT, 0);
    piece(&e, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n  Hi there [/INST]", 0, 0);
    piece(&e, " ", 0, 0);
    piece(&e, "Hello!", 0, 1);
    piece(&e, " ", 0, 1);
    id(&e, EOT, 1);
    piece(&e, "[INST] Bye [/INST]", 0, 0);
    piece(&e, " ", 0, 0);
    piece(&e, "See you.", 0, 1);
    piece(&e, " ", 0, 1);
    id(&e, EOT, 1);
    check_prepared("byte_llama2",
                   "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": "
                   "\"user\", \"content\": \"  Hi there \\n\"}, {\"role\": \"assistant\", "
                   "\"content\": \" Hello! \"}, {\"role\": \"user\", \"content\": \"Bye\"}, "
                   "{\"role\": \"assistant\", \"content\": \"See you.\\n\"}]}\n",
                   "byte", "llama2", &e, 257);

    /* byte tokenizer, no template named: plain (prompt, then response and end-of-text) */
    e = (Expect){byte, {0}, {0}};
    id(&e, EOT, 0);
    piece(&e, "Q: sky colour?\n", 0, 0);
    piece(&e, "A: blue", 0, 1);
    id(&e, EOT, 1);
    id(&e, EOT, 0);
    piece(&e, "Be brief.", 0, 0);
    piece(&e, "Hi", 0, 0);
    piece(&e, "Hello!", 0, 1);
    id(&e, EOT, 1);
    check_prepared("byte_plain",
                   "{\"prompt\": \"Q: sky colour?\\n\", \"response\": \"A: blue\"}\n"
                   "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": "
                   "\"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": "
                   "\"Hello!\"}]}\n",
                   "byte", NULL, &e, 257);

    /* templates: names, and llama2's turn order */
    HnChatTemplate t;
    CHECK(hn_chat_template_choose(byte, NULL, &t) == HN_OK && t.kind == HN_CHAT_PLAIN,
          "byte defaults to plain");
    hn_chat_template_free(&t);
    CHECK(hn_chat_template_choose(byte, "jinja", &t) == HN_ERR &&
              strstr(hn_error_message(), "chatml, llama2 or plain"),
          "an unknown template name is refused: %s", hn_error_message());
    hn_chat_template_choose(byte, "llama2", &t);
    HnTokens ids = {0}, mask = {0};
    const char* two_users = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": "
                            "\"user\", \"content\": \"b\"}, {\"role\": \"assistant\", "
                            "\"content\": \"c\"}]}";
    CHECK(hn_instruct_encode(&t, byte, two_users, strlen(two_users), &ids, &mask) == HN_ERR &&
              strstr(hn_error_message(), "alternating") && ids.n == 0 && mask.n == 0,
          "llama2 needs alternating turns: %s", hn_error_message());
    hn_chat_template_free(&t);
    hn_tokens_free(&ids);
    hn_tokens_free(&mask);

    test_bad_lines();

    /* SmolLM2's own tokenizer and chat template */
    char model[1200];
    snprintf(model, sizeof model, "%s/models/smollm2.h5", hn_test_env("HONE_SOURCE_DIR"));
    HnTokenizer* smol = smollm2_tokenizer(model);
    if (!smol) {
        const char* req = getenv("HONE_REQUIRE_ALL");
        CHECK(!(req && strcmp(req, "1") == 0), "%s is missing (scripts/get_model.sh)", model);
        fprintf(stderr, "note: %s is missing (scripts/get_model.sh): SmolLM2 part skipped\n",
                model);
    } else {
        static const char SMOL_SYSTEM[] =
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
        CHECK(hn_chat_template_choose(smol, NULL, &t) == HN_OK && t.kind == HN_CHAT_CHATML &&
                  t.default_system && strcmp(t.default_system, SMOL_SYSTEM) == 0,
              "SmolLM2's template is ChatML with its default system message ('%s')",
              t.default_system ? t.default_system : "(none)");
        hn_chat_template_free(&t);
        HnTokens one = {0};
        hn_tokenizer_encode_special(smol, "<|im_end|>", 10, &one);
        int im_end = one.n == 1 ? one.ids[0] : -1;
        hn_tokens_free(&one);
        CHECK(im_end >= 0 && im_end < 49152, "<|im_end|> is one special id (%d)", im_end);

        e = (Expect){smol, {0}, {0}};
        expect_chatml(&e, hn_tokenizer_doc_start(smol), SMOL_SYSTEM);
        /* what HF gives: the rendered text encoded whole, specials recognised (the third
         * example's literal <|im_end|> is text here, so compare the first two) */
        HnTokens whole = {0};
        if (hn_tokenizer_doc_start(smol) < 0) {
            const char* r =
                "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                "<|im_start|>assistant\n4<|im_end|>\n"
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nSay 12 words"
                "<|im_end|>\n<|im_start|>assistant\nOne two three, 123.<|im_end|>\n";
            hn_tokenizer_encode_special(smol, r, strlen(r), &whole);
            CHECK(whole.n < e.ids.n && memcmp(whole.ids, e.ids.ids, whole.n * sizeof(int)) == 0,
                  "pieces and the whole rendered text encode alike");
        }
        hn_tokens_free(&whole);
        /* the injected <|im_end|> inside a response stays text: one end token per turn */
        HnTokens c = counted(&e.ids, &e.mask);
        int ends = 0;
        for (size_t i = 0; i < c.n; i++)
            ends += c.ids[i] == im_end;
        CHECK(ends == 4, "4 assistant turns, 4 counted <|im_end|> (got %d)", ends);
        hn_tokens_free(&c);
        check_prepared("smollm2", EXAMPLES, model, NULL, &e, 49152);

        /* other template texts: Llama-2's is recognised, an unknown one is refused */
        HnTokenizer* l2 = with_template(smol, "{% for m in messages %}[INST] {{ m }} [/INST]");
        CHECK(l2 && hn_chat_template_choose(l2, NULL, &t) == HN_OK && t.kind == HN_CHAT_LLAMA2,
              "a [INST] template is llama2: %s", hn_error_message());
        hn_chat_template_free(&t);
        HnTokenizer* odd = with_template(smol, "{% for m in messages %}<<{{ m }}>>{% endfor %}");
        CHECK(odd && hn_chat_template_choose(odd, NULL, &t) == HN_ERR &&
                  strstr(hn_error_message(), "--template chatml|llama2|plain"),
              "an unknown template is refused: %s", hn_error_message());
        CHECK(odd && hn_chat_template_choose(odd, "chatml", &t) == HN_OK &&
                  t.kind == HN_CHAT_CHATML && !t.default_system,
              "a named template overrides");
        hn_chat_template_free(&t);
        hn_tokenizer_free(l2);
        hn_tokenizer_free(odd);
        hn_tokenizer_free(smol);
    }
    hn_tokenizer_free(byte);
    return hn_test_finish("test_instruct");
}
