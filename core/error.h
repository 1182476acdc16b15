/*
 * Errors in library code: a function that can fail returns HN_ERR (or NULL) after
 * recording one line of text with hn_error(); the CLI prints that line and exits non-zero.
 * Library code never calls exit() and never prints errors itself.
 */
#ifndef HONE_ERROR_H
#define HONE_ERROR_H

#define HN_OK 0
#define HN_ERR (-1)

/* record the error text (printf-style); always returns HN_ERR so callers can `return hn_error(...)`
 */
int hn_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/* the last recorded error of this thread ("" if none) */
const char* hn_error_message(void);
void hn_error_clear(void);

#endif
