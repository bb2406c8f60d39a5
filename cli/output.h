/* output: how the CLI prints data on stdout: API JSON pretty-printed or
 * converted to YAML (libyaml's emitter), aligned tables, kubectl-style
 * ages. */
#ifndef BANGER_OUTPUT_H
#define BANGER_OUTPUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct bg_err;

/* Cut trailing blanks off s in place; returns s. */
char *output_rstrip(char *s);

/* j as JSON with a 2-space indent and a final newline. */
void output_json(FILE *out, const json_t *j);

/* j as one YAML document (with "---" when explicit_start).  Strings that
 * would read back as another type are quoted.  Negative on an emitter
 * error. */
int output_yaml(FILE *out, const json_t *j, int explicit_start, struct bg_err **err);

/* A table of rows of n_cols cells (NULL cells print "-").  Columns are
 * padded to the widest cell and separated by 3 spaces; the last column is
 * not padded. */
struct table {
        size_t n_cols;
        char **cells;        /* row-major, owned */
        size_t n_rows;
};

void table_init(struct table *t, size_t n_cols);
/* Append a row of n_cols cells (copied; NULL stays NULL). */
void table_add(struct table *t, const char *const *cells);
/* Column widths (array of n_cols, caller frees). */
size_t *table_widths(const struct table *t);
void table_print(FILE *out, const struct table *t);
/* Print one row with the given widths. */
void table_print_row(FILE *out, const char *const *cells, size_t n_cols, const size_t *widths);
void table_release(struct table *t);

/* Parse RFC 3339 UTC ("2026-11-23T15:40:00.123Z") into ms since the
 * epoch; -1 when it is not that. */
int64_t parse_time_ms(const char *s);

/* Age from `since` to now, like kubectl: "5s", "3m", "2h", "4d";  "-" when
 * since is NULL or unreadable. */
void format_age(const char *since, int64_t now_ms, char *buf, size_t len);

#endif
