/* The per-thread last-error line; see error.h. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char hn_error_text[1024];

int hn_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hn_error_text, sizeof hn_error_text, fmt, ap);
    va_end(ap);
    return HN_ERR;
}

const char* hn_error_message(void) {
    return hn_error_text;
}

void hn_error_clear(void) {
    hn_error_text[0] = '\0';
}
