/* yamlnode: the bounded YAML reader shared by spec.c and config.c, and the
 * small toolkit both use to validate what it reads.
 *
 * yn_parse() drives libyaml's event API (never its document loader) and
 * turns each document into a tree of yn_nodes carrying line:column marks.
 * Untrusted bytes are bounded before anything grows: documents, nesting
 * depth, scalar length and nodes per document are capped, and anchors,
 * aliases and tags are refused, so nothing is ever expanded.  Problems
 * inside one document are recorded on that document and its node is
 * "poisoned" (validators skip it silently, the reader already reported it);
 * only a broken stream, too many documents or too deep nesting stop the
 * whole read, because libyaml's cost grows with the square of flow depth.
 *
 * Plain scalars are typed with the YAML 1.2 core schema as banger uses it:
 * true/True/TRUE/false/False/FALSE are booleans, [-+]?[0-9]+ is an integer,
 * ~/null/Null/NULL/empty is null; every other plain scalar and every quoted
 * or block scalar is a string.
 *
 * The same trees are built from JSON (yn_from_json) so records read back
 * from the store are checked by exactly the same validator as files.
 */
#ifndef BANGER_YAMLNODE_H
#define BANGER_YAMLNODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum yn_type { YN_SCALAR, YN_MAP, YN_SEQ };
enum yn_kind { YN_NULL, YN_BOOL, YN_INT, YN_STR, YN_OTHER };

struct yn_node {
        enum yn_type type;
        enum yn_kind kind;         /* scalars only; YN_OTHER: a JSON real */
        bool poison;               /* already reported by the reader: skip */
        unsigned line, column;     /* 1-based; 0 for nodes built from JSON */
        char *str;                 /* scalar text, NUL-terminated; NULL otherwise */
        size_t len;
        bool b;                    /* YN_BOOL value */
        long long i;               /* YN_INT value, saturated at LLONG_MIN/MAX */
        struct yn_node **kids;     /* map: key, value, key, value...; seq: items */
        size_t n;                  /* number of kids (twice the pairs for a map) */
};

/* One problem: where, which field path ("" when none), why. */
struct yn_msg {
        unsigned line, column;     /* 1-based; 0 when unknown */
        char *field;
        char *reason;
};

/* A bounded list of problems: after YN_MAX_ERRORS it ends with one
 * "too many errors" entry and ignores the rest, so a hostile document
 * cannot make its own error report large. */
#define YN_MAX_ERRORS 100
struct yn_errs {
        struct yn_msg *v;
        size_t n;
        bool full;
};

struct yn_limits {
        size_t max_docs;
        size_t max_depth;          /* nested collections */
        size_t max_scalar;         /* bytes */
        size_t max_nodes;          /* per document */
};

/* Nodes per document: a valid spec holds about a thousand at most. */
#define YN_MAX_NODES 8192

struct yn_doc {
        struct yn_node *root;      /* NULL when the document was empty of events */
        bool truncated;            /* node cap hit: the tree is incomplete */
        unsigned line;             /* 1-based line of the document start */
        const char *raw;           /* the document's text inside the input buffer */
        size_t raw_len;
        struct yn_errs errs;       /* reader problems (anchors, tags, limits) */
};

/* Called once per complete document.  It may take doc->root (and set it to
 * NULL) and may move doc->errs out; the reader frees what is left. */
typedef void (*yn_doc_fn)(struct yn_doc *doc, void *ctx);

/* Read len bytes of YAML.  Returns 0 when the whole stream was read, or -1
 * when it stopped early; then *stream_err (caller releases it with
 * yn_msg_release) says where and why, and the documents completed before
 * that point have already been handed to fn. */
int yn_parse(const char *buf, size_t len, const struct yn_limits *lim,
             yn_doc_fn fn, void *ctx, struct yn_msg *stream_err);

/* Build a tree from JSON (no marks).  Strings holding NUL become YN_OTHER
 * so no validator accepts them.  Returns NULL past max_depth. Caller frees. */
struct yn_node *yn_from_json(const json_t *j, size_t max_depth);

/* How a plain (unquoted) scalar with text s is typed; writers use it to
 * decide when a string must be quoted. */
enum yn_kind yn_plain_kind(const char *s);

/* Free a tree (NULL is a no-op). */
void yn_free(struct yn_node *n);
/* Free a message's strings (not m itself); NULL is a no-op. */
void yn_msg_release(struct yn_msg *m);

/* Add a problem (lists start zeroed).  at gives the mark (NULL: 0:0). */
void yn_err(struct yn_errs *e, const struct yn_node *at, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void yn_err_at(struct yn_errs *e, unsigned line, unsigned column, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
/* Order by line then column, stably, keeping "too many errors" last. */
void yn_errs_sort(struct yn_errs *e);
/* Free every message and empty the list. */
void yn_errs_release(struct yn_errs *e);
/* All messages as "field: reason; field: reason" (caller frees). */
char *yn_errs_join(const struct yn_errs *e);

/* Field paths: "parent.key" ("key" when parent is empty) and "parent[i]".
 * Keys are user text, so control characters become '?' and long keys are
 * cut, keeping one error one line.  Caller frees. */
char *yn_path(const char *parent, const char *key);
char *yn_path_index(const char *parent, size_t i);

/* Typed access that reports what was expected at path.  Each returns
 * false (NULL) and records "must be a string" etc. on a mismatch; a
 * poisoned node fails silently. */
const char *yn_want_str(struct yn_errs *e, const struct yn_node *n, const char *path);
bool yn_want_bool(struct yn_errs *e, const struct yn_node *n, const char *path, bool *out);
bool yn_want_int(struct yn_errs *e, const struct yn_node *n, const char *path,
                 long long min, long long max, long long *out);
bool yn_want_map(struct yn_errs *e, const struct yn_node *n, const char *path);
bool yn_want_seq(struct yn_errs *e, const struct yn_node *n, const char *path);
/* Index of n's text in names[0..count), or -1 ("must be one of: a, b"). */
int yn_want_enum(struct yn_errs *e, const struct yn_node *n, const char *path,
                 const char *const *names, size_t count);

/* A mapping with a fixed set of keys. */
struct yn_field {
        const char *name;
        bool required;
};

/* Match map's keys against fields: vals[i] gets the value node of
 * fields[i] (NULL when absent).  Records "unknown field", "duplicate key",
 * non-string keys and "required" (at the mapping's own mark).  map must be
 * a YN_MAP. */
void yn_fields(struct yn_errs *e, const struct yn_node *map, const char *path,
               const struct yn_field *fields, size_t n_fields, const struct yn_node **vals);

/* Value of key in a map, NULL when absent or not a map (no errors). */
const struct yn_node *yn_get(const struct yn_node *map, const char *key);

#endif
