/* err: see err.h. Messages are built with vasprintf; out of memory aborts. */
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

int bg_error(struct bg_err **err, int code, const char *fmt, ...)
{
        if (code <= 0)
                code = EIO;
        if (!err || *err)
                return -code;
        struct bg_err *e = xmalloc(sizeof *e);
        va_list ap;
        va_start(ap, fmt);
        e->msg = xvasprintf(fmt, ap);
        va_end(ap);
        e->code = code;
        *err = e;
        return -code;
}

int bg_error_wrap(struct bg_err **err, const char *fmt, ...)
{
        if (!err || !*err)
                return -EIO;
        va_list ap;
        va_start(ap, fmt);
        char *ctx = xvasprintf(fmt, ap);
        va_end(ap);
        char *msg = xasprintf("%s: %s", ctx, (*err)->msg);
        free(ctx);
        free((*err)->msg);
        (*err)->msg = msg;
        return -(*err)->code;
}

void bg_err_free(struct bg_err *e)
{
        if (!e)
                return;
        free(e->msg);
        free(e);
}

const char *bg_err_msg(const struct bg_err *e)
{
        return e ? e->msg : "unknown error";
}
