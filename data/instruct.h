/*
 * Instruction data: one example (a JSONL line) -> token ids and a loss mask.
 *
 * An example is {"prompt": "...", "response": "..."} (a user turn and an assistant turn) or
 * {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]} with at least
 * one assistant turn. hone cannot run a model's Jinja chat template, so it recognises the
 * common ones from the template text and renders them itself:
 *   - chatml (the template mentions "<|im_start|>"): "<|im_start|>ROLE\nCONTENT<|im_end|>\n"
 *     per message. When the template itself writes "<|im_start|>system\n...<|im_end|>"
 *     (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
 *     that text is the default system message of examples that do not start with one.
 *   - llama2 (the template mentions "[INST]"): HF's Llama-2-chat template: BOS "[INST] "
 *     user.strip() " [/INST]" then " " assistant.strip() " " EOS; a first system message
 *     becomes "<<SYS>>\nSYSTEM\n<</SYS>>\n\n" in front of the first user turn; turns must
 *     alternate user, assistant. BOS only where the tokenizer has one.
 *   - plain: the contents one after the other with nothing between them, each assistant
 *     turn followed by EOS (byte and GPT-2 tokenizers, which carry no chat template, and
 *     model tokenizers without one default to it).
 * A template text that is none of these is an error unless a template is named.
 * Template markers (<|im_start|>, <|im_end|>) become their special ids where the tokenizer
 * has them (otherwise they are plain text, as with the byte tokenizer); message contents
 * are always encoded as ordinary text, so data cannot inject a special token. Text between
 * special tokens is encoded as one piece, as HF tokenizes a rendered template.
 * The mask is 1 exactly on the tokens the loss counts: the assistant turns' contents and
 * the token that ends each of them (<|im_end|> for chatml, EOS for llama2 and plain); a
 * token that straddles template text and a response (llama2's " Sure") counts. System,
 * user, role headers and the document start never count.
 */
#ifndef HONE_INSTRUCT_H
#define HONE_INSTRUCT_H

#include <stddef.h>

#include "data/tokenizer.h"

typedef enum { HN_CHAT_PLAIN, HN_CHAT_CHATML, HN_CHAT_LLAMA2 } HnChatKind;

typedef struct {
    HnChatKind kind;
    char* default_system; /* chatml: the template's own system message, or NULL */
} HnChatTemplate;

/* name: "chatml", "llama2", "plain", or NULL to recognise the tokenizer's chat template
 * (plain when it has none). HN_ERR naming the choices on an unknown name or template. */
int hn_chat_template_choose(const HnTokenizer* tok, const char* name, HnChatTemplate* out);
void hn_chat_template_free(HnChatTemplate* t);
const char* hn_chat_template_name(HnChatKind kind);

/* Append one example (JSON text, not NUL-terminated) to ids and mask (one 0/1 entry per
 * id): the document start (hn_tokenizer_doc_start, unless llama2's BOS takes its place),
 * then the rendered conversation. HN_ERR with the reason on a malformed example (the
 * caller adds file and line); ids and mask are then left as they were. */
int hn_instruct_encode(const HnChatTemplate* t, const HnTokenizer* tok, const char* json,
                       size_t len, HnTokens* ids, HnTokens* mask);

#endif
