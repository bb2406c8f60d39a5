/* spec: the Sandbox spec model, its YAML parser and validator, and its
 * canonical JSON form.
 *
 * A spec file is untrusted input.  spec_parse_buffer() reads it with
 * libyaml's event API under hard limits (size, documents, depth, scalar
 * length, no anchors/aliases) so whatever bytes it holds, parsing is
 * bounded in time and memory.  Every problem becomes a spec_error naming
 * file:line:column, the field path ("spec.vcpu") and the reason; a bad
 * document never affects another document or file.
 *
 * Scalars are typed with the YAML 1.2 core schema: only true/false are
 * booleans, integers are decimal digits with an optional sign, ~/null/empty
 * are null; everything else (and every quoted scalar) is a string.
 *
 * The canonical JSON form (spec_to_json) fills in every static default, so
 * two specs that mean the same thing hash the same (spec_hash).  Defaults
 * that depend on the host or config (vcpu, memory_mib, disk_size, image)
 * stay unset here (0 / NULL) and are resolved by the daemon.
 */
#ifndef BANGER_SPEC_H
#define BANGER_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bg_err;

#define SPEC_API_VERSION "banger/v1"
#define SPEC_KIND "Sandbox"

/* Limits on untrusted input. */
#define SPEC_MAX_FILE_BYTES (1024 * 1024)
#define SPEC_MAX_DOCS 256
#define SPEC_MAX_DEPTH 16
#define SPEC_MAX_SCALAR 4096
#define SPEC_MAX_LABELS 64
#define SPEC_MAX_FILE_SYNC 64
#define SPEC_MAX_PORTS 64

/* Numeric ranges (inclusive). */
#define SPEC_VCPU_MIN 1
#define SPEC_VCPU_MAX 32
#define SPEC_MEMORY_MIB_MIN 128
#define SPEC_MEMORY_MIB_MAX 262144

enum spec_state { SPEC_STATE_RUNNING, SPEC_STATE_STOPPED };
enum spec_hypervisor { SPEC_HV_AUTO, SPEC_HV_FIRECRACKER, SPEC_HV_QEMU };
enum spec_restart { SPEC_RESTART_ON_FAILURE, SPEC_RESTART_ALWAYS, SPEC_RESTART_NEVER };

struct spec_label {
        char *key;
        char *value;
};

struct spec_workspace {
        char *path;               /* required */
        char *branch;             /* NULL when unset */
        char *from;               /* NULL when unset (means HEAD) */
        bool include_untracked;   /* default false */
};

struct spec_file_sync {
        char *host;               /* required */
        char *guest;              /* required, starts with "~/" or "/root/" */
        unsigned mode;            /* permission bits; 0600 when unset */
        bool mode_set;
};

struct spec_port {
        unsigned host;            /* 1..65535 */
        unsigned guest;           /* 1..65535 */
};

struct bg_spec {
        char *name;                       /* metadata.name */
        struct spec_label *labels;        /* metadata.labels, in file order */
        size_t n_labels;

        enum spec_state state;            /* default running */
        char *image;                      /* NULL: config default_image */
        char *kernel;                     /* never NULL after parse; default "default" */
        enum spec_hypervisor hypervisor;  /* default auto */
        unsigned vcpu;                    /* 0: resolved by the daemon */
        unsigned memory_mib;              /* 0: resolved by the daemon */
        uint64_t disk_size;               /* bytes; 0: resolved by the daemon */
        enum spec_restart restart;        /* default on-failure */
        uint64_t idle_timeout_ms;         /* stop after this long idle (guest agent); 0: never */
        bool nat;                         /* default false */
        struct spec_workspace *workspace; /* NULL when absent */
        struct spec_file_sync *file_sync;
        size_t n_file_sync;
        struct spec_port *ports;
        size_t n_ports;
};

struct spec_error {
        char *file;       /* as given to the parser */
        unsigned line;    /* 1-based; 0 when unknown */
        unsigned column;  /* 1-based; 0 when unknown */
        char *field;      /* "spec.vcpu", "metadata.name", "" for document-level */
        char *reason;     /* lowercase, no trailing period */
};

/* One YAML document of a file. */
struct spec_doc {
        struct bg_spec *spec;        /* NULL when the document is invalid */
        char *name;                  /* metadata.name when it could be read (even if invalid), else NULL */
        unsigned line;               /* where the document starts, 1-based */
        char *raw;                   /* the document's own text (no "---" marker), for writing it out */
        struct spec_error *errors;   /* every error found in this document */
        size_t n_errors;
};

struct spec_file {
        char *path;
        struct spec_doc *docs;
        size_t n_docs;
        struct spec_error *errors;   /* file-level errors: YAML syntax, size, too many documents */
        size_t n_errors;
};

/* Parse and validate len bytes of YAML named `path` (used in messages only).
 * Always returns a spec_file in *out (caller frees); validation problems are
 * in its errors, never in the return value. */
int spec_parse_buffer(const char *path, const char *buf, size_t len, struct spec_file **out);

/* Read path (at most SPEC_MAX_FILE_BYTES) and parse it.  A file that cannot
 * be read or is too large yields a spec_file with one file-level error. */
int spec_parse_path(const char *path, struct spec_file **out);

/* Like spec_parse_path, but the file (after any symlink) must belong to
 * uid owner ((uid_t)-1: anyone).  bangerd runs as root and reads a folder
 * its user controls: this keeps a symlink from making it read, and echo in
 * errors, a file the user could not read. */
int spec_parse_path_owned(const char *path, uid_t owner, struct spec_file **out);

/* A spec_file holding one file-level error (reason is copied). */
struct spec_file *spec_file_error(const char *path, const char *reason);

/* True when the file has no file-level error and every document is valid. */
bool spec_file_ok(const struct spec_file *f);

void spec_file_free(struct spec_file *f);
void spec_free(struct bg_spec *s);
struct bg_spec *spec_dup(const struct bg_spec *s);

/* "file:line:column: field: reason" (field part omitted when empty).
 * Caller frees. */
char *spec_error_format(const struct spec_error *e);

/* Canonical JSON of the spec, every static default filled in, keys as in
 * the YAML ("memory_mib", "disk_size" as "8G"/"512M" text, file_sync mode as
 * "0644").  Returns a new reference.  Shape:
 *   {"apiVersion","kind","metadata":{"name","labels":{}},"spec":{...}}  */
json_t *spec_to_json(const struct bg_spec *s);

/* Inverse of spec_to_json (used for records in the store): validates with
 * the same rules; errors name the JSON field. */
int spec_from_json(const json_t *j, struct bg_spec **out, struct bg_err **err);

/* Stable 64-bit hash of the canonical JSON. */
uint64_t spec_hash(const struct bg_spec *s);

/* The spec as a YAML document (no leading "---"), for files the CLI writes.
 * Caller frees. */
char *spec_to_yaml(const struct bg_spec *s);

/* What a change of one field implies for a sandbox that exists. */
enum spec_impact {
        SPEC_IMPACT_NONE,      /* labels, restart policy: recorded, nothing else */
        SPEC_IMPACT_STATE,     /* spec.state: start or stop */
        SPEC_IMPACT_RESTART,   /* vcpu, memory_mib, nat, ports: stop + start */
        SPEC_IMPACT_RECREATE,  /* image, kernel, hypervisor, disk_size, workspace, file_sync
                                  (the work disk's initial content): delete + create */
};

struct spec_change {
        char *field;           /* "spec.vcpu", "metadata.labels.team", "spec.ports" */
        char *old_value;       /* text form, NULL when absent */
        char *new_value;       /* text form, NULL when absent */
        enum spec_impact impact;
};

/* Field-by-field difference from a to b, in a stable order.  *out is a heap
 * array of *n changes (NULL/0 when equal); free with spec_changes_free. */
void spec_diff(const struct bg_spec *a, const struct bg_spec *b, struct spec_change **out, size_t *n);
void spec_changes_free(struct spec_change *c, size_t n);
/* The strongest impact among changes (SPEC_IMPACT_NONE for none). */
enum spec_impact spec_changes_impact(const struct spec_change *c, size_t n);
const char *spec_impact_name(enum spec_impact i);

/* Name checks shared by the CLI and daemon. */
bool spec_name_valid(const char *name);     /* RFC 1123 label, 1..63 */

/* "8G" / "512M" -> bytes; -1 when not a valid size.  And back: bytes that are
 * a whole number of GiB print as "NG", else "NM". */
int spec_size_parse(const char *s, uint64_t *bytes);
void spec_size_format(uint64_t bytes, char *buf, size_t len);

const char *spec_state_name(enum spec_state s);
const char *spec_hypervisor_name(enum spec_hypervisor h);
const char *spec_restart_name(enum spec_restart r);
/* spec.idle_timeout: "30m", "90s", "2h", "1h30m" (10 s to 30 days) <-> ms.
 * parse: 0 or -EINVAL; format: the canonical text (largest units first). */
#define SPEC_IDLE_MIN_MS 10000ull
#define SPEC_IDLE_MAX_MS (30ull * 86400 * 1000)
int spec_duration_parse(const char *s, uint64_t *ms);
void spec_duration_format(uint64_t ms, char *buf, size_t len);

#endif
