/* Instruction examples -> token ids + loss mask; see instruct.h. */
#include "data/instruct.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

const char* hn_chat_template_name(HnChatKind kind) {
    return kind == HN_CHAT_CHATML ? "chatml" : kind == HN_CHAT_LLAMA2 ? "llama2" : "plain";
}

/* the system message a ChatML template writes itself when the conversation has none: the
 * text of a literal '<|im_start|>system\n...<|im_end|>' (newline real or escaped), skipping
 * candidates that are not literal text (e.g. '<|im_start|>system\n' + messages[0]...) */
static int chatml_default_system(const char* tpl, char** out) {
    *out = NULL;
    static const char head[] = "<|im_start|>system", end[] = "<|im_end|>";
    for (const char* p = strstr(tpl, head); p; p = strstr(p + 1, head)) {
        const char* s = p + strlen(head);
        if (*s == '\n')
            s++;
        else if (s[0] == '\\' && s[1] == 'n')
            s += 2;
        else
            continue;
        const char* e = strstr(s, end);
        if (!e || e == s) continue;
        if (memchr(s, '\'', (size_t)(e - s)) || memchr(s, '"', (size_t)(e - s)) ||
            memchr(s, '{', (size_t)(e - s)) || memchr(s, '}', (size_t)(e - s)))
            continue;
        char* text = malloc((size_t)(e - s) + 1);
        if (!text) return hn_error("out of memory");
        size_t n = 0;
        for (const char* q = s; q < e; q++) {
            if (q[0] == '\\' && q + 1 < e) {
                q++;
                text[n++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
            } else {
                text[n++] = *q;
            }
        }
        text[n] = '\0';
        *out = text;
        return HN_OK;
    }
    return HN_OK;
}

int hn_chat_template_choose(const HnTokenizer* tok, const char* name, HnChatTemplate* out) {
    memset(out, 0, sizeof *out);
    const char* tpl = hn_tokenizer_chat_template(tok);
    if (name) {
        if (strcmp(name, "chatml") == 0)
            out->kind = HN_CHAT_CHATML;
        else if (strcmp(name, "llama2") == 0)
            out->kind = HN_CHAT_LLAMA2;
        else if (strcmp(name, "plain") == 0)
            out->kind = HN_CHAT_PLAIN;
        else
            return hn_error("unknown chat template '%s' (chatml, llama2 or plain)", name);
    } else if (!tpl) {
        out->kind = HN_CHAT_PLAIN;
    } else if (strstr(tpl, "<|im_start|>")) {
        out->kind = HN_CHAT_CHATML;
    } else if (strstr(tpl, "[INST]")) {
        out->kind = HN_CHAT_LLAMA2;
    } else {
        return hn_error("the tokenizer's chat template is not one hone recognises (ChatML or "
                        "Llama-2 [INST]): pass --template chatml|llama2|plain");
    }
    if (out->kind == HN_CHAT_CHATML && tpl) return chatml_default_system(tpl, &out->default_system);
    return HN_OK;
}

void hn_chat_template_free(HnChatTemplate* t) {
    free(t->default_system);
    memset(t, 0, sizeof *t);
}

/* ---- rendering: a conversation becomes a list of pieces ---- */

/* ordinary text; a template marker (special if the tokenizer has it); a token id */
enum { P_TEXT, P_MARK, P_ID };
typedef struct {
    const char* s;
    size_t n;
    int kind, id, target;
} Piece;

typedef struct {
    Piece* p;
    int n, cap;
} Pieces;

static int add(Pieces* ps, int kind, const char* s, size_t n, int id, int target) {
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 32;
        Piece* p = realloc(ps->p, (size_t)cap * sizeof *p);
        if (!p) return hn_error("out of memory");
        ps->p = p;
        ps->cap = cap;
    }
    ps->p[ps->n++] = (Piece){s, n, kind, id, target};
    return HN_OK;
}
static int text(Pieces* ps, const char* s, int target) {
    return add(ps, P_TEXT, s, strlen(s), -1, target);
}

typedef struct {
    const char* role;
    const char* content;
} Msg;

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* content.strip() as a (pointer, length) */
static void strip(const char* s, const char** b, size_t* n) {
    size_t len = strlen(s), i = 0;
    while (i < len && is_space(s[i]))
        i++;
    while (len > i && is_space(s[len - 1]))
        len--;
    *b = s + i;
    *n = len - i;
}

static int render_chatml(const HnChatTemplate* t, const Msg* m, int nm, Pieces* ps) {
    int rc = HN_OK;
    if (t->default_system && strcmp(m[0].role, "system") != 0) {
        rc |= add(ps, P_MARK, "<|im_start|>", 12, -1, 0);
        rc |= text(ps, "system\n", 0);
        rc |= text(ps, t->default_system, 0);
        rc |= add(ps, P_MARK, "<|im_end|>", 10, -1, 0);
        rc |= text(ps, "\n", 0);
    }
    for (int i = 0; i < nm && rc == HN_OK; i++) {
        int a = strcmp(m[i].role, "assistant") == 0;
        rc |= add(ps, P_MARK, "<|im_start|>", 12, -1, 0);
        rc |= text(ps, m[i].role, 0);
        rc |= text(ps, "\n", 0);
        rc |= text(ps, m[i].content, a);
        rc |= add(ps, P_MARK, "<|im_end|>", 10, -1, a);
        rc |= text(ps, "\n", 0);
    }
    return rc ? HN_ERR : HN_OK;
}

static int render_llama2(const HnTokenizer* tok, const Msg* m, int nm, Pieces* ps) {
    const char* sys = NULL;
    if (strcmp(m[0].role, "system") == 0) {
        sys = m[0].content;
        m++;
        nm--;
    }
    for (int i = 0; i < nm; i++)
        if (strcmp(m[i].role, i % 2 ? "assistant" : "user") != 0)
            return hn_error("the llama2 template needs turns alternating user, assistant (after "
                            "an optional first system message); message %d is %s",
                            i + 1 + (sys != NULL), m[i].role);
    int rc = HN_OK, bos = hn_tokenizer_bos(tok), eos = hn_tokenizer_eos(tok);
    for (int i = 0; i < nm && rc == HN_OK; i++) {
        const char* b;
        size_t n;
        strip(m[i].content, &b, &n);
        if (i % 2 == 0) {
            if (bos >= 0) rc |= add(ps, P_ID, NULL, 0, bos, 0);
            rc |= text(ps, "[INST] ", 0);
            if (i == 0 && sys) {
                /* (<<SYS>>\n + system + \n<</SYS>>\n\n + user).strip() */
                rc |= text(ps, "<<SYS>>\n", 0);
                rc |= add(ps, P_TEXT, sys, strlen(sys), -1, 0);
                rc |= add(ps, P_TEXT, "\n<</SYS>>\n\n", n ? 11 : 9, -1, 0);
                const char* u = m[i].content; /* the user's leading spaces stay */
                if (n) rc |= add(ps, P_TEXT, u, (size_t)(b + n - u), -1, 0);
            } else {
                rc |= add(ps, P_TEXT, b, n, -1, 0);
            }
            rc |= text(ps, " [/INST]", 0);
        } else {
            rc |= text(ps, " ", 0);
            rc |= add(ps, P_TEXT, b, n, -1, 1);
            rc |= text(ps, " ", 1);
            rc |= add(ps, P_ID, NULL, 0, eos, 1);
        }
    }
    return rc ? HN_ERR : HN_OK;
}

static int render_plain(const HnTokenizer* tok, const Msg* m, int nm, Pieces* ps) {
    int rc = HN_OK;
    for (int i = 0; i < nm && rc == HN_OK; i++) {
        int a = strcmp(m[i].role, "assistant") == 0;
        rc |= text(ps, m[i].content, a);
        if (a) rc |= add(ps, P_ID, NULL, 0, hn_tokenizer_eos(tok), 1);
    }
    return rc ? HN_ERR : HN_OK;
}

/* ---- encoding pieces ---- */

static size_t token_len(const HnTokenizer* tok, int id) {
    size_t n = 0;
    hn_tokenizer_token_bytes(tok, id, &n);
    return n;
}

/* the special id a marker stands for, or -1 if the tokenizer has no such special token */
static int marker_id(const HnTokenizer* tok, const Piece* p) {
    HnTokens a = {0}, b = {0};
    int id = -1;
    if (hn_tokenizer_encode_special(tok, p->s, p->n, &a) == HN_OK &&
        hn_tokenizer_encode(tok, p->s, p->n, &b) == HN_OK && a.n == 1 &&
        (b.n != 1 || b.ids[0] != a.ids[0]))
        id = a.ids[0];
    hn_tokens_free(&a);
    hn_tokens_free(&b);
    return id;
}

/* a run of text pieces encoded as one text; a token counts if any of its bytes comes from a
 * target piece. Byte offsets are those of the bytes the tokenizer keeps (a vocabulary may
 * drop some), measured per piece; if they do not add up, each piece is encoded alone. */
static int encode_run(const HnTokenizer* tok, const Piece* p, int n, HnTokens* ids,
                      HnTokens* mask) {
    if (n == 0) return HN_OK;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += p[i].n;
    char* s = malloc(total + 1);
    size_t* end = malloc((size_t)n * sizeof *end); /* kept-byte end of each piece */
    HnTokens all = {0}, one = {0};
    int rc = s && end ? HN_OK : hn_error("out of memory");
    size_t off = 0, kept = 0;
    for (int i = 0; rc == HN_OK && i < n; i++) {
        memcpy(s + off, p[i].s, p[i].n);
        off += p[i].n;
        one.n = 0;
        rc = hn_tokenizer_encode(tok, p[i].s, p[i].n, &one);
        for (size_t k = 0; k < one.n; k++)
            kept += token_len(tok, one.ids[k]);
        end[i] = kept;
    }
    if (rc == HN_OK) rc = hn_tokenizer_encode(tok, s, total, &all);
    size_t sum = 0;
    for (size_t k = 0; rc == HN_OK && k < all.n; k++)
        sum += token_len(tok, all.ids[k]);
    if (rc == HN_OK && sum == kept) {
        size_t at = 0;
        int piece = 0;
        for (size_t k = 0; rc == HN_OK && k < all.n; k++) {
            size_t len = token_len(tok, all.ids[k]), stop = at + len;
            int target = 0;
            /* pieces overlapping [at, stop): from the one holding byte `at` on */
            while (piece < n && end[piece] <= at)
                piece++;
            for (int q = piece; q < n; q++) {
                size_t qb = q ? end[q - 1] : 0;
                if (qb >= stop) break;
                if (p[q].target && end[q] > qb && end[q] > at) target = 1;
            }
            rc = hn_tokens_push(ids, all.ids[k]);
            if (rc == HN_OK) rc = hn_tokens_push(mask, target);
            at = stop;
        }
    } else {
        for (int i = 0; rc == HN_OK && i < n; i++) {
            one.n = 0;
            rc = hn_tokenizer_encode(tok, p[i].s, p[i].n, &one);
            for (size_t k = 0; rc == HN_OK && k < one.n; k++) {
                rc = hn_tokens_push(ids, one.ids[k]);
                if (rc == HN_OK) rc = hn_tokens_push(mask, p[i].target);
            }
        }
    }
    free(s);
    free(end);
    hn_tokens_free(&all);
    hn_tokens_free(&one);
    return rc == HN_OK ? HN_OK : hn_error("out of memory");
}

static int encode_pieces(const HnTokenizer* tok, Pieces* ps, HnTokens* ids, HnTokens* mask) {
    int from = 0, rc = HN_OK;
    for (int i = 0; rc == HN_OK && i < ps->n; i++) {
        Piece* p = &ps->p[i];
        if (p->kind == P_MARK) {
            p->id = marker_id(tok, p);
            p->kind = p->id >= 0 ? P_ID : P_TEXT;
        }
        if (p->kind != P_ID) continue;
        rc = encode_run(tok, ps->p + from, i - from, ids, mask);
        if (rc == HN_OK) rc = hn_tokens_push(ids, p->id);
        if (rc == HN_OK) rc = hn_tokens_push(mask, p->target);
        from = i + 1;
    }
    if (rc == HN_OK) rc = encode_run(tok, ps->p + from, ps->n - from, ids, mask);
    return rc == HN_OK ? HN_OK : hn_error("out of memory");
}

/* ---- one example ---- */

static int parse(const cJSON* j, Msg** out, int* nm) {
    *out = NULL;
    *nm = 0;
    if (!cJSON_IsObject(j)) return hn_error("not a JSON object");
    const cJSON* msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const cJSON* pr = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    const cJSON* re = cJSON_GetObjectItemCaseSensitive(j, "response");
    if (msgs) {
        if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
            return hn_error("\"messages\" must be a non-empty array");
        int n = cJSON_GetArraySize(msgs), k = 0, assistant = 0;
        Msg* m = calloc((size_t)n, sizeof *m);
        if (!m) return hn_error("out of memory");
        const cJSON* e;
        cJSON_ArrayForEach(e, msgs) {
            const cJSON* role = cJSON_GetObjectItemCaseSensitive(e, "role");
            const cJSON* content = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
                free(m);
                return hn_error("message %d needs string \"role\" and \"content\"", k + 1);
            }
            const char* r = role->valuestring;
            if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
                free(m);
                return hn_error("message %d has role '%s' (system, user or assistant)", k + 1, r);
            }
            assistant += strcmp(r, "assistant") == 0;
            m[k].role = r;
            m[k++].content = content->valuestring;
        }
        if (!assistant) {
            free(m);
            return hn_error("no assistant message: nothing to learn from");
        }
        *out = m;
        *nm = n;
        return HN_OK;
    }
    if (!cJSON_IsString(pr) || !cJSON_IsString(re))
        return hn_error("needs string \"prompt\" and \"response\", or \"messages\"");
    Msg* m = calloc(2, sizeof *m);
    if (!m) return hn_error("out of memory");
    m[0] = (Msg){"user", pr->valuestring};
    m[1] = (Msg){"assistant", re->valuestring};
    *out = m;
    *nm = 2;
    return HN_OK;
}

int hn_instruct_encode(const HnChatTemplate* t, const HnTokenizer* tok, const char* json,
                       size_t len, HnTokens* ids, HnTokens* mask) {
    cJSON* j = cJSON_ParseWithLength(json, len);
    if (!j) return hn_error("not valid JSON");
    Msg* m = NULL;
    int nm = 0;
    int rc = parse(j, &m, &nm);
    Pieces ps = {0};
    size_t n0 = ids->n, m0 = mask->n;
    int start = hn_tokenizer_doc_start(tok);
    if (rc == HN_OK && start >= 0 && !(t->kind == HN_CHAT_LLAMA2 && start == hn_tokenizer_bos(tok)))
        rc = add(&ps, P_ID, NULL, 0, start, 0);
    if (rc == HN_OK)
        rc = t->kind == HN_CHAT_CHATML   ? render_chatml(t, m, nm, &ps)
             : t->kind == HN_CHAT_LLAMA2 ? render_llama2(tok, m, nm, &ps)
                                         : render_plain(tok, m, nm, &ps);
    if (rc == HN_OK) rc = encode_pieces(tok, &ps, ids, mask);
    if (rc != HN_OK) {
        ids->n = n0;
        mask->n = m0;
    }
    free(ps.p);
    free(m);
    cJSON_Delete(j);
    return rc;
}
