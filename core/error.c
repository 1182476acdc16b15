/* The per-thread last-error line; see error.h. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char hn_error_text[1024];

int hn_error(const char* fmt, ...) {
    /* through a copy, so a message may quote the previous one (hn_error_message()) */
    char text[sizeof hn_error_text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(hn_error_text, text, sizeof text);
    return HN_ERR;
}

const char* hn_error_message(void) {
    return hn_error_text;
}

void hn_error_clear(void) {
    hn_error_text[0] = '\0';
}
