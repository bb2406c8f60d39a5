/* err: the one error idiom of banger.
 *
 * A function that can fail returns 0 or a negative errno-style code and
 * takes an optional `struct bg_err **err` last.  On failure it fills *err
 * (when err and *err are non-NULL-able) with a code and a lowercase message;
 * callers add context on the way up with bg_error_wrap(), so the final text
 * reads "start web: put /boot-source: 400 ...".  The caller owns *err and
 * releases it with bg_err_free().
 */
#ifndef BANGER_ERR_H
#define BANGER_ERR_H

#include <stdarg.h>

struct bg_err {
        int code;       /* positive errno-style code */
        char *msg;      /* heap string, never NULL */
};

/* Set *err (if err != NULL and *err == NULL) to a new error; return -code.
 * code <= 0 is treated as EIO.  An existing *err is kept (first error wins). */
int bg_error(struct bg_err **err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Prefix "<context>: " to *err's message; return -(*err)->code, or -EIO when
 * there is no error object to wrap. */
int bg_error_wrap(struct bg_err **err, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Free an error; NULL is a no-op. */
void bg_err_free(struct bg_err *e);

/* The message of e, or "unknown error" when e is NULL. */
const char *bg_err_msg(const struct bg_err *e);

#endif
