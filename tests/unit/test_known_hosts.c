/* known_hosts: banger's lines are found by their "banger:<id>" comment,
 * replaced in place, removed and garbage-collected, while every other line
 * stays byte for byte; ssh-keygen -F finds what we pin; concurrent writers
 * (processes) are serialized by the flock and lose nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "known_hosts.h"
#include "sshkey.h"
#include "util.h"

#define ID1 "0123456789abcdef"
#define ID2 "fedcba9876543210"
#define ID3 "00000000000000aa"

static char dir[64];
static char path[128];

/* Lines a user might have: comments, blanks, a hand-pinned key, a hashed
 * entry, CRLF, and two near-misses of banger's mark that are not banger's. */
static const char FOREIGN[] =
        "# my hosts\n"
        "\n"
        "gitlab.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
        "|1|abc=|def= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\r\n"
        "x.vm ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl banger:0123456789ABCDEF\n"
        "banger:0123456789abcdef\n";

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof dir, "/tmp/bg-kh-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/known_hosts", dir);
        setenv("HOME", dir, 1);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        rm_rf(dir, NULL);
        return 0;
}

static char *slurp(void)
{
        char *s = NULL;
        size_t n = 0;
        struct bg_err *e = NULL;
        if (read_file_limited(path, KH_MAX_FILE, &s, &n, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        return s;
}

static void put(const char *text)
{
        assert_int_equal(write_file_atomic(path, text, strlen(text), 0600, NULL), 0);
}

static char *newkey(void)
{
        struct sshkey *k = NULL;
        assert_int_equal(sshkey_generate(&k, NULL), 0);
        char *l = sshkey_public_line(k, "ignored-comment");
        sshkey_free(k);
        return l;
}

static void set(const char *id, const char *name, const char *ip, const char *key)
{
        struct kh_entry e = { id, name, ip, key };
        struct bg_err *err = NULL;
        if (kh_set(path, &e, &err) < 0)
                fail_msg("kh_set: %s", bg_err_msg(err));
}

static size_t count(const char *hay, const char *needle)
{
        size_t n = 0;
        for (const char *p = hay; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

static void test_format_marks_the_line_and_rejects_what_could_inject(void **state)
{
        (void)state;
        char *key = newkey();
        struct kh_entry e = { ID1, "web", "172.16.0.2", key };
        char *l = kh_format(&e, NULL);
        assert_non_null(l);
        assert_true(str_has_prefix(l, "web.vm,172.16.0.2 ssh-ed25519 AAAA"));
        assert_true(str_has_suffix(l, " banger:" ID1));
        assert_null(strstr(l, "ignored-comment"));
        free(l);

        static const struct kh_entry bad[] = {
                { "0123456789ABCDEF", "web", NULL, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" },
                { "0123", "web", NULL, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" },
                { ID1, "Web", NULL, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" },
                { ID1, "a,b", NULL, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" },
                { ID1, "*", NULL, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" },
                { ID1, "web", "172.16.0.300", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" },
                { ID1, "web", "1.2.3.4,evil", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" },
                { ID1, "web", NULL, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\nevil ssh-rsa AAAA" },
                { ID1, "web", NULL, "ssh-ed25519" },
                { ID1, "web", NULL, NULL },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct bg_err *err = NULL;
                assert_null(kh_format(&bad[i], &err));
                assert_int_equal(err->code, EINVAL);
                assert_int_equal(kh_set(path, &bad[i], NULL), -EINVAL);
                bg_err_free(err);
        }
        assert_int_equal(access(path, F_OK), -1);   /* nothing was written */
        free(key);
}

static void test_set_on_missing_file_pins_key_ssh_keygen_finds_by_name_and_ip(void **state)
{
        (void)state;
        char *key = newkey();
        set(ID1, "web", "172.16.0.2", key);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        static const char *const hosts[] = { "web.vm", "172.16.0.2" };
        for (size_t i = 0; i < ARRAY_SIZE(hosts); i++) {
                char *cmd = xasprintf("ssh-keygen -F %s -f %s | grep -v '^#'", hosts[i], path);
                FILE *p = popen(cmd, "r");
                char buf[512] = "";
                assert_non_null(fgets(buf, sizeof buf, p));
                pclose(p);
                assert_true(str_has_prefix(buf, "web.vm,172.16.0.2 ssh-ed25519 "));
                free(cmd);
        }
        char *cmd = xasprintf("ssh-keygen -F other.vm -f %s >/dev/null", path);
        assert_int_not_equal(system(cmd), 0);
        free(cmd);
        free(key);
}

static void test_set_replace_remove_keep_foreign_lines_byte_for_byte(void **state)
{
        (void)state;
        put(FOREIGN);
        char *k1 = newkey(), *k2 = newkey(), *k3 = newkey();
        set(ID1, "web", "172.16.0.2", k1);
        set(ID2, "api", "172.16.0.3", k2);
        char *t = slurp();
        assert_true(str_has_prefix(t, FOREIGN));
        assert_int_equal(count(t, " banger:" ID1 "\n"), 1);
        assert_int_equal(count(t, " banger:" ID2 "\n"), 1);
        /* The near-misses stayed foreign: still there, once. */
        assert_int_equal(count(t, "banger:0123456789ABCDEF\n"), 1);
        assert_int_equal(count(t, "\nbanger:0123456789abcdef\n"), 1);
        free(t);

        /* Replacing keeps the line's place: web stays before api. */
        set(ID1, "web", "172.16.0.9", k3);
        t = slurp();
        assert_true(str_has_prefix(t, FOREIGN));
        char *web = strstr(t, "web.vm,172.16.0.9 ");
        char *api = strstr(t, "api.vm,172.16.0.3 ");
        assert_non_null(web);
        assert_non_null(api);
        assert_true(web < api);
        assert_null(strstr(t, "172.16.0.2"));
        assert_int_equal(count(t, " banger:" ID1), 1);
        free(t);

        assert_int_equal(kh_remove(path, ID1, NULL), 0);
        assert_int_equal(kh_remove(path, ID2, NULL), 0);
        t = slurp();
        assert_string_equal(t, FOREIGN);
        free(t);
        free(k1);
        free(k2);
        free(k3);
}

static void test_foreign_last_line_without_newline_is_kept_and_terminated(void **state)
{
        (void)state;
        put("# no newline at the end");
        char *k = newkey();
        set(ID1, "web", NULL, k);
        char *t = slurp();
        assert_true(str_has_prefix(t, "# no newline at the end\nweb.vm ssh-ed25519 "));
        free(t);
        assert_int_equal(kh_remove(path, ID1, NULL), 0);
        t = slurp();
        assert_string_equal(t, "# no newline at the end\n");
        free(t);
        free(k);
}

static void test_set_drops_a_stale_banger_line_for_the_same_host(void **state)
{
        (void)state;
        char *old = newkey(), *fresh = newkey(), *other = newkey();
        set(ID1, "old", "172.16.0.2", old);
        set(ID3, "keep", "172.16.0.4", other);
        set(ID2, "new", "172.16.0.2", fresh);   /* the address was reused */
        char *t = slurp();
        assert_int_equal(count(t, "172.16.0.2"), 1);
        assert_int_equal(count(t, "banger:" ID1), 0);
        assert_int_equal(count(t, "banger:" ID2), 1);
        assert_int_equal(count(t, "banger:" ID3), 1);
        free(t);
        free(old);
        free(fresh);
        free(other);
}

static void test_remove_and_gc_on_missing_file_or_folder_create_nothing(void **state)
{
        (void)state;
        assert_int_equal(kh_remove(path, ID1, NULL), 0);
        size_t removed = 9;
        assert_int_equal(kh_gc(path, NULL, 0, &removed, NULL), 0);
        assert_int_equal(removed, 0);
        assert_int_equal(kh_sync(path, NULL, 0, NULL), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(kh_remove(path, "nope", NULL), -EINVAL);

        /* The ssh folder itself missing: removing is a no-op, adding makes it 0700. */
        char *deep = xasprintf("%s/state/ssh/known_hosts", dir);
        char *sshdir = xasprintf("%s/state/ssh", dir);
        assert_int_equal(kh_remove(deep, ID1, NULL), 0);
        assert_int_equal(access(sshdir, F_OK), -1);
        char *k = newkey();
        struct kh_entry e = { ID1, "web", "172.16.0.2", k };
        assert_int_equal(kh_set(deep, &e, NULL), 0);
        struct stat st;
        assert_int_equal(stat(sshdir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        free(k);
        free(sshdir);
        free(deep);
}

static void test_gc_drops_lines_no_record_claims_and_keeps_foreign(void **state)
{
        (void)state;
        put(FOREIGN);
        char *k = newkey();
        set(ID1, "a", "172.16.0.2", k);
        set(ID2, "b", "172.16.0.3", k);
        set(ID3, "c", "172.16.0.4", k);
        const char *keep[] = { ID2 };
        size_t removed = 0;
        assert_int_equal(kh_gc(path, keep, 1, &removed, NULL), 0);
        assert_int_equal(removed, 2);
        char *t = slurp();
        assert_true(str_has_prefix(t, FOREIGN));
        assert_int_equal(count(t, "banger:" ID2 "\n"), 1);
        assert_int_equal(count(t, "\n"), count(FOREIGN, "\n") + 1);
        free(t);
        assert_int_equal(kh_gc(path, keep, 1, &removed, NULL), 0);
        assert_int_equal(removed, 0);   /* GC twice changes nothing */
        free(k);
}

static void test_sync_rewrites_banger_lines_from_the_list_and_is_idempotent(void **state)
{
        (void)state;
        put(FOREIGN);
        char *k1 = newkey(), *k2 = newkey();
        set(ID3, "gone", "172.16.0.7", k1);
        struct kh_entry list[] = {
                { ID1, "web", "172.16.0.2", k1 },
                { ID2, "api", "fd00::3", k2 },
                { ID1, "web", "172.16.0.2", k2 },   /* a duplicate id: the first wins */
        };
        assert_int_equal(kh_sync(path, list, ARRAY_SIZE(list), NULL), 0);
        char *t = slurp();
        assert_true(str_has_prefix(t, FOREIGN));
        assert_int_equal(count(t, "banger:" ID3), 0);
        assert_int_equal(count(t, " banger:" ID1), 1);
        assert_non_null(strstr(t, "api.vm,fd00::3 "));
        struct stat a, b;
        assert_int_equal(stat(path, &a), 0);
        assert_int_equal(kh_sync(path, list, ARRAY_SIZE(list), NULL), 0);
        assert_int_equal(stat(path, &b), 0);
        assert_int_equal(a.st_ino, b.st_ino);   /* unchanged content: not rewritten */

        /* One invalid entry: nothing is written at all. */
        struct kh_entry badlist[] = { { ID3, "x", NULL, k1 }, { ID2, "BAD", NULL, k2 } };
        struct bg_err *err = NULL;
        assert_int_equal(kh_sync(path, badlist, 2, &err), -EINVAL);
        bg_err_free(err);
        char *t2 = slurp();
        assert_string_equal(t, t2);
        free(t2);
        free(t);
        free(k1);
        free(k2);
}

static void test_concurrent_writers_are_serialized_and_lose_nothing(void **state)
{
        (void)state;
        put(FOREIGN);
        enum { PROCS = 6, EACH = 15 };
        char *k = newkey();
        pid_t pids[PROCS];
        for (int p = 0; p < PROCS; p++) {
                pids[p] = fork();
                assert_true(pids[p] >= 0);
                if (pids[p] == 0) {
                        int bad = 0;
                        for (int i = 0; i < EACH; i++) {
                                char id[32], name[32], ip[32];
                                snprintf(id, sizeof id, "%016x", p * 100 + i);
                                snprintf(name, sizeof name, "vm-%d-%d", p, i);
                                snprintf(ip, sizeof ip, "10.0.%d.%d", p, i + 1);
                                struct kh_entry e = { id, name, ip, k };
                                bad |= kh_set(path, &e, NULL) < 0;
                        }
                        _exit(bad);
                }
        }
        for (int p = 0; p < PROCS; p++) {
                int status = 0;
                assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
                assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        char *t = slurp();
        assert_true(str_has_prefix(t, FOREIGN));
        assert_int_equal(count(t, " banger:"), count(FOREIGN, " banger:") + PROCS * EACH);
        assert_int_equal(count(t, "\n"), count(FOREIGN, "\n") + PROCS * EACH);
        free(t);
        free(k);
}

static void test_lookup_finds_banger_pins_by_name_or_ip_never_foreign_lines(void **state)
{
        (void)state;
        char *type = NULL, *b64 = NULL;
        assert_int_equal(kh_lookup(path, "web.vm", &type, &b64, NULL), -ENOENT);   /* no file */
        put(FOREIGN);
        _cleanup_free_ char *key = newkey();
        set(ID1, "web", "172.16.0.2", key);
        const char *want = strchr(key, ' ') + 1;
        size_t wl = strcspn(want, " ");
        const char *hosts[] = { "web.vm", "172.16.0.2" };
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(kh_lookup(path, hosts[i], &type, &b64, NULL), 0);
                assert_string_equal(type, "ssh-ed25519");
                assert_int_equal(strlen(b64), wl);
                assert_memory_equal(b64, want, wl);
                free(type);
                free(b64);
        }
        /* Hand-pinned and near-miss lines vouch for nothing; no prefix match. */
        assert_int_equal(kh_lookup(path, "gitlab.example.com", &type, &b64, NULL), -ENOENT);
        assert_int_equal(kh_lookup(path, "x.vm", &type, &b64, NULL), -ENOENT);
        assert_int_equal(kh_lookup(path, "172.16.0.20", &type, &b64, NULL), -ENOENT);
        assert_int_equal(kh_lookup(path, "we", &type, &b64, NULL), -ENOENT);
        assert_null(type);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_format_marks_the_line_and_rejects_what_could_inject),
                T(test_set_on_missing_file_pins_key_ssh_keygen_finds_by_name_and_ip),
                T(test_set_replace_remove_keep_foreign_lines_byte_for_byte),
                T(test_foreign_last_line_without_newline_is_kept_and_terminated),
                T(test_set_drops_a_stale_banger_line_for_the_same_host),
                T(test_remove_and_gc_on_missing_file_or_folder_create_nothing),
                T(test_gc_drops_lines_no_record_claims_and_keeps_foreign),
                T(test_sync_rewrites_banger_lines_from_the_list_and_is_idempotent),
                T(test_concurrent_writers_are_serialized_and_lose_nothing),
                T(test_lookup_finds_banger_pins_by_name_or_ip_never_foreign_lines),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
