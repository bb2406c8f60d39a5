/* output: see output.h.  The JSON to YAML conversion walks the jansson tree
 * and feeds libyaml's emitter events, so quoting and escaping are libyaml's
 * job; we only force quotes on strings that a YAML reader would otherwise
 * take for a number, a boolean, null or a date ("0644", "true", "1e3"). */
#include "output.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <yaml.h>

#include "err.h"
#include "util.h"

#define YAML_MAX_DEPTH 64

char *output_rstrip(char *s)
{
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                s[--n] = '\0';
        return s;
}

void output_json(FILE *out, const json_t *j)
{
        json_dumpf(j, out, JSON_INDENT(2));
        fputc('\n', out);
}

/* Would a plain scalar with this text read back as something other than a
 * string (YAML 1.1 or 1.2)?  Then it is quoted. */
static bool ambiguous_scalar(const char *s)
{
        static const char *const words[] = {
                "", "~", "null", "true", "false", "yes", "no", "y", "n", "on", "off",
                ".inf", "-.inf", "+.inf", ".nan",
        };
        for (size_t i = 0; i < ARRAY_SIZE(words); i++)
                if (strcasecmp(s, words[i]) == 0)
                        return true;
        const char *p = s;
        if (*p == '+' || *p == '-')
                p++;
        if (*p == '.')
                p++;
        return isdigit((unsigned char)*p) != 0;
}

static int emit(yaml_emitter_t *e, yaml_event_t *ev, struct bg_err **err)
{
        if (!yaml_emitter_emit(e, ev))   /* takes the event either way */
                return bg_error(err, EIO, "write yaml: %s", e->problem ? e->problem : "emitter error");
        return 0;
}

static int emit_scalar(yaml_emitter_t *e, const char *text, bool quote, struct bg_err **err)
{
        yaml_event_t ev;
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1,
                                     quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
        return emit(e, &ev, err);
}

static int emit_value(yaml_emitter_t *e, const json_t *j, int depth, struct bg_err **err)
{
        yaml_event_t ev;
        char num[64];

        if (depth > YAML_MAX_DEPTH)
                return bg_error(err, E2BIG, "write yaml: nested deeper than %d", YAML_MAX_DEPTH);
        switch (json_typeof(j)) {
        case JSON_OBJECT: {
                const char *key;
                json_t *v;
                yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
                if (emit(e, &ev, err) < 0)
                        return -EIO;
                json_object_foreach((json_t *)j, key, v) {
                        if (emit_scalar(e, key, ambiguous_scalar(key), err) < 0 ||
                            emit_value(e, v, depth + 1, err) < 0)
                                return -EIO;
                }
                yaml_mapping_end_event_initialize(&ev);
                return emit(e, &ev, err);
        }
        case JSON_ARRAY: {
                size_t i;
                json_t *v;
                yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
                if (emit(e, &ev, err) < 0)
                        return -EIO;
                json_array_foreach(j, i, v) {
                        if (emit_value(e, v, depth + 1, err) < 0)
                                return -EIO;
                }
                yaml_sequence_end_event_initialize(&ev);
                return emit(e, &ev, err);
        }
        case JSON_STRING: {
                const char *s = json_string_value(j);
                return emit_scalar(e, s, ambiguous_scalar(s), err);
        }
        case JSON_INTEGER:
                snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
                return emit_scalar(e, num, false, err);
        case JSON_REAL:
                snprintf(num, sizeof num, "%.17g", json_real_value(j));
                if (!strpbrk(num, ".eEn"))   /* keep it a float when read back */
                        strncat(num, ".0", sizeof num - strlen(num) - 1);
                return emit_scalar(e, num, false, err);
        case JSON_TRUE:
                return emit_scalar(e, "true", false, err);
        case JSON_FALSE:
                return emit_scalar(e, "false", false, err);
        case JSON_NULL:
        default:
                return emit_scalar(e, "null", false, err);
        }
}

int output_yaml(FILE *out, const json_t *j, int explicit_start, struct bg_err **err)
{
        yaml_emitter_t e;
        yaml_event_t ev;
        int r = -EIO;

        if (!yaml_emitter_initialize(&e))
                return bg_error(err, ENOMEM, "write yaml: cannot start the emitter");
        yaml_emitter_set_output_file(&e, out);
        yaml_emitter_set_unicode(&e, 1);
        yaml_emitter_set_indent(&e, 2);
        yaml_emitter_set_width(&e, -1);

        yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
        if (emit(&e, &ev, err) < 0)
                goto out;
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, explicit_start ? 0 : 1);
        if (emit(&e, &ev, err) < 0 || emit_value(&e, j, 0, err) < 0)
                goto out;
        yaml_document_end_event_initialize(&ev, 1);
        if (emit(&e, &ev, err) < 0)
                goto out;
        yaml_stream_end_event_initialize(&ev);
        if (emit(&e, &ev, err) < 0)
                goto out;
        r = yaml_emitter_flush(&e) ? 0 : bg_error(err, EIO, "write yaml: flush failed");
out:
        yaml_emitter_delete(&e);
        return r;
}

void table_init(struct table *t, size_t n_cols)
{
        memset(t, 0, sizeof *t);
        t->n_cols = n_cols;
}

void table_add(struct table *t, const char *const *cells)
{
        t->cells = xreallocarray(t->cells, (t->n_rows + 1) * t->n_cols, sizeof *t->cells);
        for (size_t c = 0; c < t->n_cols; c++)
                t->cells[t->n_rows * t->n_cols + c] = cells[c] ? xstrdup(cells[c]) : NULL;
        t->n_rows++;
}

size_t *table_widths(const struct table *t)
{
        size_t *w = xcalloc(t->n_cols ? t->n_cols : 1, sizeof *w);
        for (size_t r = 0; r < t->n_rows; r++)
                for (size_t c = 0; c < t->n_cols; c++) {
                        const char *s = t->cells[r * t->n_cols + c];
                        size_t n = s ? strlen(s) : 1;
                        if (n > w[c])
                                w[c] = n;
                }
        return w;
}

void table_print_row(FILE *out, const char *const *cells, size_t n_cols, const size_t *widths)
{
        char *line = xstrdup("");
        for (size_t c = 0; c < n_cols; c++) {
                const char *s = cells[c] ? cells[c] : "-";
                /* the last column is not padded */
                char *next = c + 1 == n_cols ? xasprintf("%s%s", line, s)
                                             : xasprintf("%s%-*s   ", line, (int)widths[c], s);
                free(line);
                line = next;
        }
        fprintf(out, "%s\n", output_rstrip(line));
        free(line);
}

void table_print(FILE *out, const struct table *t)
{
        _cleanup_free_ size_t *w = table_widths(t);
        for (size_t r = 0; r < t->n_rows; r++)
                table_print_row(out, (const char *const *)&t->cells[r * t->n_cols], t->n_cols, w);
}

void table_release(struct table *t)
{
        for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
                free(t->cells[i]);
        free(t->cells);
        memset(t, 0, sizeof *t);
}

int64_t parse_time_ms(const char *s)
{
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        if (!s)
                return -1;
        const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -1;
        int64_t ms = 0;
        if (*p == '.') {
                int digits = 0;
                for (p++; isdigit((unsigned char)*p); p++, digits++)
                        if (digits < 3)
                                ms = ms * 10 + (*p - '0');
                for (; digits < 3; digits++)
                        ms *= 10;
        }
        if (*p != 'Z' || p[1])
                return -1;
        time_t t = timegm(&tm);
        if (t == (time_t)-1)
                return -1;
        return (int64_t)t * 1000 + ms;
}

void format_age(const char *since, int64_t now_ms, char *buf, size_t len)
{
        int64_t t = parse_time_ms(since);
        if (t < 0) {
                snprintf(buf, len, "-");
                return;
        }
        int64_t s = (now_ms - t) / 1000;
        if (s < 0)
                s = 0;
        if (s < 60)
                snprintf(buf, len, "%llds", (long long)s);
        else if (s < 3600)
                snprintf(buf, len, "%lldm", (long long)(s / 60));
        else if (s < 86400)
                snprintf(buf, len, "%lldh", (long long)(s / 3600));
        else
                snprintf(buf, len, "%lldd", (long long)(s / 86400));
}
