/* config: ~/.config/banger/config.yaml (or DIR/config/config.yaml with
 * --root).  Every key is optional; a missing file is an empty config.
 * Unknown keys, wrong types and bad values are errors with file:line:column,
 * parsed with the same bounded YAML reader as specs. */
#ifndef BANGER_CONFIG_H
#define BANGER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct bg_err;
struct spec_file_sync;

struct bg_config {
        char *default_image;     /* NULL: "debian-bookworm" */
        char *ssh_key_path;      /* absolute or "~/..."; NULL: default */
        char *firecracker_bin;   /* NULL: search PATH */
        char *qemu_bin;          /* NULL: search PATH */
        char *bridge;            /* NULL: "banger0" */
        char *subnet;            /* NULL: "172.16.0.0/24" */
        struct {
                unsigned vcpu;          /* 0 when unset */
                unsigned memory_mib;    /* 0 when unset */
                uint64_t disk_size;     /* bytes; 0 when unset */
        } vm_defaults;
        char *log_level;         /* debug|info|warn|error; NULL: info */
        /* Copies onto every new sandbox's work disk, before spec.file_sync
         * (same entries and rules as spec.file_sync). */
        struct spec_file_sync *file_sync;
        size_t n_file_sync;
};

/* Load path into c (zeroed first).  A missing file is not an error.  On
 * error, err's message is "file:line:column: key: reason". */
int config_load(const char *path, struct bg_config *c, struct bg_err **err);
void config_release(struct bg_config *c);

#endif
