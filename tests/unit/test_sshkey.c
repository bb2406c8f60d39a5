/* sshkey: the keys banger writes are the keys OpenSSH reads (ssh-keygen -y
 * and -l agree with us), the keys ssh-keygen writes are keys we read, and
 * the user key is made once and never overwritten.  HOME is a temp folder:
 * nothing here touches the machine's ~/.ssh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "sshkey.h"
#include "util.h"

static char dir[64];

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof dir, "/tmp/bg-sshkey-XXXXXX");
        assert_non_null(mkdtemp(dir));
        setenv("HOME", dir, 1);
        umask(022);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        rm_rf(dir, NULL);
        return 0;
}

/* First line of a command's stdout (heap), or NULL. */
static char *run(const char *cmd)
{
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char buf[4096] = "";
        char *r = fgets(buf, sizeof buf, p) ? xstrdup(buf) : NULL;
        while (fgets(buf, sizeof buf, p))
                ;
        pclose(p);
        if (r)
                r[strcspn(r, "\n")] = '\0';
        return r;
}

static char *slurp(const char *path)
{
        char *s = NULL;
        size_t n = 0;
        struct bg_err *e = NULL;
        if (read_file_limited(path, 1 << 20, &s, &n, &e) < 0)
                fail_msg("read %s: %s", path, bg_err_msg(e));
        return s;
}

static mode_t mode_of(const char *path)
{
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        return st.st_mode & 07777;
}

static void test_public_line_round_trips_and_fingerprint_has_ssh_form(void **state)
{
        (void)state;
        struct sshkey *k = NULL, *p = NULL;
        assert_int_equal(sshkey_generate(&k, NULL), 0);
        char *line = sshkey_public_line(k, "me@host");
        assert_true(str_has_prefix(line, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"));
        assert_true(str_has_suffix(line, " me@host"));
        assert_int_equal(sshkey_parse_public(line, &p, NULL), 0);
        assert_memory_equal(p->pub, k->pub, 32);
        assert_false(p->has_private);
        char *fp = sshkey_fingerprint(k);
        assert_true(str_has_prefix(fp, "SHA256:"));
        assert_int_equal(strlen(fp), 7 + 43);
        char *bare = sshkey_public_line(k, NULL);
        assert_null(strchr(strchr(bare, ' ') + 1, ' '));
        free(bare);
        free(fp);
        free(line);
        sshkey_free(p);
        sshkey_free(k);
}

static void test_private_file_is_openssh_v1_wrapped_at_70_and_parses_back(void **state)
{
        (void)state;
        struct sshkey *k = NULL, *back = NULL;
        assert_int_equal(sshkey_generate(&k, NULL), 0);
        size_t len = 0;
        char *text = sshkey_private_openssh(k, "a comment", &len);
        assert_int_equal(strlen(text), len);
        assert_true(str_has_prefix(text, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA"));
        assert_true(str_has_suffix(text, "\n-----END OPENSSH PRIVATE KEY-----\n"));
        for (char *l = strchr(text, '\n') + 1; *l; l = strchr(l, '\n') + 1)
                assert_true(strcspn(l, "\n") <= 70 || str_has_prefix(l, "-----END"));
        char *comment = NULL;
        assert_int_equal(sshkey_parse_private(text, len, &back, &comment, NULL), 0);
        assert_string_equal(comment, "a comment");
        assert_memory_equal(back->pub, k->pub, 32);
        assert_memory_equal(back->seed, k->seed, 32);
        /* A flipped byte in the key body is caught, never half-parsed. */
        text[60] = text[60] == 'A' ? 'B' : 'A';
        struct sshkey *bad = NULL;
        struct bg_err *e = NULL;
        assert_true(sshkey_parse_private(text, len, &bad, NULL, &e) < 0);
        assert_null(bad);
        bg_err_free(e);
        free(comment);
        sshkey_wipe_free(text, len);
        sshkey_free(back);
        sshkey_free(k);
}

static void test_ssh_keygen_reads_our_key_and_agrees_on_public_line_and_fingerprint(void **state)
{
        (void)state;
        struct sshkey *k = NULL;
        assert_int_equal(sshkey_generate(&k, NULL), 0);
        char *path = xasprintf("%s/ssh_host_ed25519_key", dir);
        struct bg_err *e = NULL;
        if (sshkey_write_pair(k, path, "web", true, false, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_int_equal(mode_of(path), 0600);
        char *pub = xasprintf("%s.pub", path);
        assert_int_equal(mode_of(pub), 0644);

        char *line = sshkey_public_line(k, "web");
        char *cmd = xasprintf("ssh-keygen -y -f %s 2>&1", path);
        char *got = run(cmd);
        assert_non_null(got);
        assert_string_equal(got, line);
        char *pubtext = slurp(pub);
        char *withnl = xasprintf("%s\n", line);
        assert_string_equal(pubtext, withnl);

        char *fp = sshkey_fingerprint(k);
        char *cmd2 = xasprintf("ssh-keygen -l -f %s 2>&1", path);
        char *l = run(cmd2);
        char *want = xasprintf("256 %s web (ED25519)", fp);
        assert_string_equal(l, want);

        /* Writing again without replace leaves the key alone. */
        struct sshkey *k2 = NULL;
        assert_int_equal(sshkey_generate(&k2, NULL), 0);
        struct bg_err *e2 = NULL;
        assert_int_equal(sshkey_write_pair(k2, path, "x", true, false, &e2), -EEXIST);
        bg_err_free(e2);
        char *again = run(cmd);
        assert_string_equal(again, line);

        free(again);
        sshkey_free(k2);
        free(want);
        free(l);
        free(cmd2);
        free(fp);
        free(withnl);
        free(pubtext);
        free(got);
        free(cmd);
        free(line);
        free(pub);
        free(path);
        sshkey_free(k);
}

static void test_keys_made_by_ssh_keygen_parse_and_encrypted_ones_are_refused(void **state)
{
        (void)state;
        char *path = xasprintf("%s/theirs", dir);
        char *cmd = xasprintf("ssh-keygen -q -t ed25519 -N '' -C them -f %s", path);
        assert_int_equal(system(cmd), 0);
        struct sshkey *k = NULL;
        char *comment = NULL;
        struct bg_err *e = NULL;
        if (sshkey_load_private(path, &k, &comment, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_string_equal(comment, "them");
        char *line = sshkey_public_line(k, comment);
        char *pub = xasprintf("%s.pub", path);
        char *pubtext = slurp(pub);
        pubtext[strcspn(pubtext, "\n")] = '\0';
        assert_string_equal(line, pubtext);

        char *enc = xasprintf("%s/locked", dir);
        char *cmd2 = xasprintf("ssh-keygen -q -t ed25519 -N secret -f %s", enc);
        assert_int_equal(system(cmd2), 0);
        struct sshkey *k2 = NULL;
        assert_int_equal(sshkey_load_private(enc, &k2, NULL, &e), -ENOTSUP);
        assert_non_null(strstr(bg_err_msg(e), "encrypted"));
        bg_err_free(e);
        e = NULL;

        char *rsa = xasprintf("%s/rsa", dir);
        char *cmd3 = xasprintf("ssh-keygen -q -t rsa -b 1024 -N '' -f %s 2>/dev/null || "
                               "ssh-keygen -q -t rsa -N '' -f %s", rsa, rsa);
        assert_int_equal(system(cmd3), 0);
        assert_int_equal(sshkey_load_private(rsa, &k2, NULL, &e), -ENOTSUP);
        bg_err_free(e);

        free(cmd3);
        free(rsa);
        free(cmd2);
        free(enc);
        free(pubtext);
        free(pub);
        free(line);
        free(comment);
        sshkey_free(k);
        free(cmd);
        free(path);
}

static void test_garbage_is_not_a_key(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "",
                "hello",
                "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----\n",
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct sshkey *k = NULL;
                struct bg_err *e = NULL;
                assert_int_equal(sshkey_parse_private(bad[i], strlen(bad[i]), &k, NULL, &e), -EINVAL);
                assert_null(k);
                bg_err_free(e);
        }
        static const char *const badpub[] = {
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
                "ssh-ed25519",
                "ssh-ed25519 !!!",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
        };
        for (size_t i = 0; i < ARRAY_SIZE(badpub); i++) {
                struct sshkey *k = NULL;
                struct bg_err *e = NULL;
                assert_int_equal(sshkey_parse_public(badpub[i], &k, &e), -EINVAL);
                bg_err_free(e);
        }
}

static void test_user_key_path_is_default_absolute_or_home_relative(void **state)
{
        (void)state;
        static const struct {
                const char *in, *want;
        } t[] = {
                { NULL, "/s/ssh/id_ed25519" },
                { "", "/s/ssh/id_ed25519" },
                { "/keys/k", "/keys/k" },
                { "~/.ssh/id_work", "/h/.ssh/id_work" },
                { "rel/key", NULL },
                { "~other/key", NULL },
                { "~/", NULL },
                { "~", NULL },
        };
        for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
                char *out = NULL;
                struct bg_err *e = NULL;
                int rc = sshkey_user_key_path(t[i].in, "/h", "/s/ssh", &out, &e);
                if (t[i].want) {
                        assert_int_equal(rc, 0);
                        assert_string_equal(out, t[i].want);
                } else {
                        assert_int_equal(rc, -EINVAL);
                        assert_null(out);
                }
                free(out);
                bg_err_free(e);
        }
}

static void test_ensure_user_key_creates_once_and_never_overwrites(void **state)
{
        (void)state;
        char *path = xasprintf("%s/state/ssh/id_ed25519", dir);
        char *pub = xasprintf("%s.pub", path);
        bool created = false;
        struct bg_err *e = NULL;
        if (sshkey_ensure_user_key(path, &created, &e) < 0)
                fail_msg("%s", bg_err_msg(e));
        assert_true(created);
        assert_int_equal(mode_of(path), 0600);
        assert_int_equal(mode_of(pub), 0644);
        char *ssh_dir = xasprintf("%s/state/ssh", dir);
        assert_int_equal(mode_of(ssh_dir), 0700);
        char *before = slurp(path);

        assert_int_equal(sshkey_ensure_user_key(path, &created, NULL), 0);
        assert_false(created);
        char *after = slurp(path);
        assert_string_equal(before, after);

        /* A lost .pub of banger's own key comes back, equal to ssh-keygen -y. */
        char *line = NULL;
        assert_int_equal(sshkey_read_public(path, &line, NULL), 0);
        assert_int_equal(unlink(pub), 0);
        char *derived = NULL;
        assert_int_equal(sshkey_read_public(path, &derived, NULL), 0);
        assert_string_equal(derived, line);
        assert_int_equal(sshkey_ensure_user_key(path, NULL, NULL), 0);
        char *cmd = xasprintf("ssh-keygen -y -f %s", path);
        char *kg = run(cmd);
        assert_string_equal(kg, line);

        free(kg);
        free(cmd);
        free(derived);
        free(line);
        free(after);
        free(before);
        free(ssh_dir);
        free(pub);
        free(path);
}

static void test_ensure_user_key_keeps_a_file_it_did_not_make(void **state)
{
        (void)state;
        char *path = xasprintf("%s/mine", dir);
        char *pub = xasprintf("%s.pub", path);
        assert_int_equal(write_file_atomic(path, "not a key\n", 10, 0600, NULL), 0);
        bool created = true;
        assert_int_equal(sshkey_ensure_user_key(path, &created, NULL), 0);
        assert_false(created);
        char *t = slurp(path);
        assert_string_equal(t, "not a key\n");
        assert_int_equal(access(pub, F_OK), -1);   /* not derivable: nothing written */

        /* A .pub without its private key: refuse rather than pair a new key with it. */
        char *lone = xasprintf("%s/lone", dir);
        char *lonepub = xasprintf("%s/lone.pub", dir);
        assert_int_equal(write_file_atomic(lonepub, "ssh-ed25519 AAAA x\n", 19, 0644, NULL), 0);
        struct bg_err *e = NULL;
        assert_int_equal(sshkey_ensure_user_key(lone, NULL, &e), -EEXIST);
        bg_err_free(e);
        e = NULL;
        assert_int_equal(access(lone, F_OK), -1);

        /* A folder where the key should be is an error, not something to replace. */
        char *d = xasprintf("%s/adir", dir);
        assert_int_equal(mkdir(d, 0700), 0);
        assert_true(sshkey_ensure_user_key(d, NULL, &e) < 0);
        bg_err_free(e);

        free(d);
        free(lonepub);
        free(lone);
        free(t);
        free(pub);
        free(path);
}

/* What may go into a guest's authorized_keys: real public key lines of
 * any OpenSSH type, and nothing else a configured path could point at. */
static void test_only_public_key_lines_pass_the_check(void **state)
{
        (void)state;
        static const struct {
                const char *line;
                int want;
        } cases[] = {
                { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey", 0 },
                { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey user@host", 0 },
                { "ssh-ed25519\tAAAAC3NzaC1lZDI1NTE5AAAAIKey a comment with spaces", 0 },
                { "", -EINVAL },
                { "ssh-ed25519", -EINVAL },
                { "ssh-ed25519 ", -EINVAL },
                { "ssh-ed25519 not-base64!", -EINVAL },
                { "ssh-ed25519 AAAAtest", -EINVAL },                        /* length past the blob */
                { "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIKey", -EINVAL },         /* blob names another type */
                { "ssh-dss AAAAB3NzaC1kc3MAAACBAP", -EINVAL },               /* not a type banger passes */
                { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", -EINVAL },             /* the type and nothing else */
                { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey bad\x01comment", -EINVAL },
                { "root:$6$salt$hash:19000:0:99999:7:::", -EINVAL },
                { "-----BEGIN OPENSSH PRIVATE KEY-----", -EINVAL },
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                int got = sshkey_check_public_line(cases[i].line);
                if (got != cases[i].want)
                        fail_msg("'%s': got %d, want %d", cases[i].line, got, cases[i].want);
        }
        /* and the lines ssh-keygen writes for every type banger passes */
        const char *types[] = { "ed25519", "rsa", "ecdsa" };
        for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
                char *path = xasprintf("%s/k-%s", dir, types[i]);
                char *cmd = xasprintf("ssh-keygen -q -t %s -N '' -C 'me@host' -f %s", types[i], path);
                assert_int_equal(system(cmd), 0);
                char *line = NULL;
                struct bg_err *e = NULL;
                if (sshkey_read_public(path, &line, &e) < 0)
                        fail_msg("%s: %s", types[i], bg_err_msg(e));
                assert_int_equal(sshkey_check_public_line(line), 0);
                free(line);
                free(cmd);
                free(path);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_public_line_round_trips_and_fingerprint_has_ssh_form),
                cmocka_unit_test(test_private_file_is_openssh_v1_wrapped_at_70_and_parses_back),
                cmocka_unit_test_setup_teardown(test_ssh_keygen_reads_our_key_and_agrees_on_public_line_and_fingerprint,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_keys_made_by_ssh_keygen_parse_and_encrypted_ones_are_refused,
                                                setup, teardown),
                cmocka_unit_test(test_garbage_is_not_a_key),
                cmocka_unit_test_setup_teardown(test_only_public_key_lines_pass_the_check, setup, teardown),
                cmocka_unit_test(test_user_key_path_is_default_absolute_or_home_relative),
                cmocka_unit_test_setup_teardown(test_ensure_user_key_creates_once_and_never_overwrites, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_ensure_user_key_keeps_a_file_it_did_not_make, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
