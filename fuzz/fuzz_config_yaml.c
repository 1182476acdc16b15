/*
 * Fuzz target: the YAML run config (core/config.c over libyaml). The input is YAML text,
 * optionally followed by a NUL byte and `--set` assignments, one a line. A config that
 * loads must write itself back (hn_config_to_text) as YAML that loads to the same values.
 */
#include "core/config.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const uint8_t* nul = size ? memchr(data, 0, size) : NULL;
    size_t n1 = nul ? (size_t)(nul - data) : size;
    char* yaml = fuzz_cstr(data, n1);
    char* sets = nul ? fuzz_cstr(nul + 1, size - n1 - 1) : NULL;
    HnConfig* cfg = malloc(sizeof *cfg);
    HnConfig* again = malloc(sizeof *again);
    if (!cfg || !again) abort();
    hn_config_defaults(cfg);
    int ok = hn_config_load_text(cfg, yaml, "fuzz.yaml") == 0;
    for (char *line = sets, *next; ok && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        else
            next = line + strlen(line);
        (void)hn_config_set(cfg, line);
    }
    if (ok) {
        (void)hn_config_validate(cfg);
        char* text = hn_config_to_text(cfg);
        FUZZ_CHECK(text != NULL);
        hn_config_defaults(again);
        int back = hn_config_load_text(again, text, "roundtrip.yaml");
        if (back != 0) fprintf(stderr, "round trip: %s\n%s", hn_error_message(), text);
        FUZZ_CHECK(back == 0);
        const char* diff = hn_config_first_difference(cfg, again, NULL, 0);
        if (diff) fprintf(stderr, "round trip changed %s\n%s", diff, text);
        FUZZ_CHECK(diff == NULL);
        free(text);
    }
    free(again);
    free(cfg);
    free(sets);
    free(yaml);
    return 0;
}
