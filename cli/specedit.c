/* specedit: see specedit.h.  A line-based edit of block-style YAML: find
 * the top-level `spec:` mapping, then its `state:` key at the mapping's
 * indentation; replace the value, or add the key.  Anything else (flow
 * style, odd layouts) falls back to re-emitting the document; either way
 * the result is parsed back and must equal the old spec but for state. */
#include "specedit.h"

#include <ctype.h>
#include <string.h>

#include "util.h"

static size_t indent_of(const char *line)
{
        size_t n = 0;
        while (line[n] == ' ')
                n++;
        return n;
}

static bool blank_or_comment(const char *line)
{
        size_t i = indent_of(line);
        return line[i] == '\0' || line[i] == '\n' || line[i] == '#';
}

/* Split into lines that keep their '\n'. */
static char **split_lines(const char *text, size_t *n)
{
        char **v = NULL;
        *n = 0;
        for (const char *p = text; *p;) {
                const char *e = strchr(p, '\n');
                size_t len = e ? (size_t)(e - p) + 1 : strlen(p);
                v = xreallocarray(v, *n + 1, sizeof *v);
                v[(*n)++] = xstrndup(p, len);
                p += len;
        }
        return v;
}

static char *edit_in_place(const char *raw, const char *value)
{
        size_t n;
        char **lines = split_lines(raw, &n);
        char *out = NULL;
        size_t spec_line = n, child = 0, insert_at = n, state_line = n;
        for (size_t i = 0; i < n; i++) {
                const char *l = lines[i];
                if (strncmp(l, "spec:", 5) == 0) {
                        const char *rest = l + 5;
                        while (*rest == ' ')
                                rest++;
                        if (*rest && *rest != '\n' && *rest != '#')
                                goto done;   /* flow style: not ours to edit */
                        spec_line = i;
                        break;
                }
        }
        if (spec_line == n) {
                /* No spec at all: append one. */
                size_t len = strlen(raw);
                out = xasprintf("%s%sspec:\n  state: %s\n", raw, len && raw[len - 1] != '\n' ? "\n" : "", value);
                goto done;
        }
        insert_at = spec_line + 1;
        for (size_t i = spec_line + 1; i < n; i++) {
                if (blank_or_comment(lines[i]))
                        continue;
                size_t ind = indent_of(lines[i]);
                if (ind == 0)
                        break;   /* the next top-level key */
                if (!child)
                        child = ind;
                if (ind == child && strncmp(lines[i] + ind, "state:", 6) == 0) {
                        state_line = i;
                        break;
                }
        }
        if (!child)
                child = 2;
        out = xstrdup("");
        for (size_t i = 0; i < n; i++) {
                char *add;
                if (i == state_line) {
                        /* Keep a trailing comment. */
                        const char *hash = strstr(lines[i] + child + 6, " #");
                        size_t hl = hash ? strcspn(hash, "\n") : 0;
                        add = xasprintf("%*sstate: %s%.*s\n", (int)child, "", value, (int)hl, hash ? hash : "");
                } else if (state_line == n && i + 1 == insert_at) {
                        add = xasprintf("%s%s%*sstate: %s\n", lines[i], strchr(lines[i], '\n') ? "" : "\n",
                                        (int)child, "", value);
                } else {
                        add = xstrdup(lines[i]);
                }
                char *joined = xasprintf("%s%s", out, add);
                free(out);
                free(add);
                out = joined;
        }
done:
        for (size_t i = 0; i < n; i++)
                free(lines[i]);
        free(lines);
        return out;
}

/* Does text parse to exactly `want`? */
static bool parses_to(const char *text, const struct bg_spec *want)
{
        struct spec_file *f = NULL;
        spec_parse_buffer("<edit>", text, strlen(text), &f);
        bool ok = f && spec_file_ok(f) && f->n_docs == 1 && f->docs[0].spec &&
                  spec_hash(f->docs[0].spec) == spec_hash(want);
        spec_file_free(f);
        return ok;
}

char *specedit_set_state(const char *raw, const struct bg_spec *old, enum spec_state state, bool *rewritten)
{
        struct bg_spec *want = spec_dup(old);
        want->state = state;
        *rewritten = false;
        char *text = raw ? edit_in_place(raw, spec_state_name(state)) : NULL;
        if (!text || !parses_to(text, want)) {
                free(text);
                text = spec_to_yaml(want);
                *rewritten = true;
        }
        spec_free(want);
        return text;
}
