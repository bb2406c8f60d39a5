/* workspace: real git repositories in a temp folder, built with the git
 * CLI (only here: the module itself never runs git), listed, copied and
 * branched.  Each test gets a fresh folder with HOME pointing into it and
 * no system git config, so the user's settings cannot leak in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "err.h"
#include "util.h"
#include "workspace.h"

struct fx {
        char dir[64];
        char *proj;   /* the working tree every test starts from */
        char *dest;   /* an empty folder to copy into */
};

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *cmd = xvasprintf(fmt, ap);
        va_end(ap);
        int r = system(cmd);
        if (r != 0)
                fail_msg("command failed (%d): %s", r, cmd);
}

/* Run one git command in dir with an identity and a fixed default branch. */
static void git(const char *dir, const char *args)
{
        sh("cd '%s' && git -c user.name=tester -c user.email=tester@example.com "
           "-c init.defaultBranch=main %s >/dev/null", dir, args);
}

static char *in(const char *dir, const char *rel)
{
        return xasprintf("%s/%s", dir, rel);
}

/* Write rel under dir (parents created) with content and mode. */
static void put(const char *dir, const char *rel, const char *content, mode_t mode)
{
        _cleanup_free_ char *p = in(dir, rel);
        _cleanup_free_ char *parent = xstrdup(p);
        *strrchr(parent, '/') = '\0';
        assert_int_equal(mkdir_p(parent, 0755, NULL), 0);
        assert_int_equal(write_file_atomic(p, content, strlen(content), mode, NULL), 0);
}

static char *slurp(const char *dir, const char *rel)
{
        _cleanup_free_ char *p = in(dir, rel);
        char *buf = NULL;
        struct bg_err *e = NULL;
        if (read_file_limited(p, 1 << 20, &buf, NULL, &e) < 0)
                fail_msg("read %s: %s", p, bg_err_msg(e));
        return buf;
}

/* Open fds of this process: every path of the module must close its own. */
static size_t count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        assert_non_null(d);
        size_t n = 0;
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static bool exists(const char *dir, const char *rel)
{
        _cleanup_free_ char *p = in(dir, rel);
        struct stat st;
        return lstat(p, &st) == 0;
}

/* The standard project: tracked files of each kind, one file tracked
 * although ignored, untracked files and ignored files and folders. */
static void make_project(struct fx *f)
{
        assert_int_equal(mkdir(f->proj, 0755), 0);
        git(f->proj, "init -q");
        put(f->proj, ".gitignore", "*.log\nbuild/\n", 0644);
        put(f->proj, "README", "hello\n", 0644);
        put(f->proj, "src/main.c", "int main(void) { return 0; }\n", 0644);
        put(f->proj, "bin/run.sh", "#!/bin/sh\necho hi\n", 0755);
        put(f->proj, "keep.log", "forced\n", 0644);
        _cleanup_free_ char *link = in(f->proj, "link");
        assert_int_equal(symlink("README", link), 0);
        git(f->proj, "add .gitignore README src bin link");
        git(f->proj, "add -f keep.log");
        git(f->proj, "commit -q -m init");
        put(f->proj, "notes.txt", "n\n", 0644);
        put(f->proj, "newdir/deep/x.c", "x\n", 0644);
        put(f->proj, "debug.log", "ignored\n", 0644);
        put(f->proj, "build/out.o", "obj\n", 0644);
        put(f->proj, "build/sub/y", "y\n", 0644);
}

static int setup(void **state)
{
        struct fx *f = xcalloc(1, sizeof *f);
        snprintf(f->dir, sizeof f->dir, "/tmp/bg-ws-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->proj = in(f->dir, "proj");
        f->dest = in(f->dir, "dest");
        assert_int_equal(mkdir(f->dest, 0755), 0);
        umask(022);
        setenv("HOME", f->dir, 1);
        setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
        unsetenv("GIT_DIR");
        unsetenv("GIT_WORK_TREE");
        unsetenv("GIT_INDEX_FILE");
        /* After HOME: libgit2 reads it when it initialises. */
        git_libgit2_init();
        make_project(f);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        setfsuid(0);   /* a failed fsuid test must not leak its identity */
        setfsgid(0);
        git_libgit2_shutdown();
        rm_rf(f->dir, NULL);
        free(f->proj);
        free(f->dest);
        free(f);
        return 0;
}

static void list_ok(const char *path, bool untracked, struct ws_list *l)
{
        struct bg_err *e = NULL;
        if (workspace_list(path, untracked, l, &e) < 0)
                fail_msg("workspace_list %s: %s", path, bg_err_msg(e));
        assert_null(e);
}

static const struct ws_file *find(const struct ws_list *l, const char *path)
{
        for (size_t i = 0; i < l->n; i++)
                if (!strcmp(l->files[i].path, path))
                        return &l->files[i];
        return NULL;
}

static void copy_ok(const struct ws_list *l, const char *dest)
{
        _cleanup_close_ int fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        struct bg_err *e = NULL;
        if (workspace_copy(l, fd, &e) < 0)
                fail_msg("workspace_copy: %s", bg_err_msg(e));
}

static void expect_error(int r, struct bg_err *e, int code, const char *want)
{
        assert_true(r < 0);
        assert_non_null(e);
        if (!strstr(e->msg, want))
                fail_msg("error '%s' does not contain '%s'", e->msg, want);
        if (code)
                assert_int_equal(e->code, code);
        assert_int_equal(r, -e->code);
        bg_err_free(e);
}

/* ---- workspace_list ---- */

static void test_list_tracked_by_default_untracked_with_flag_ignored_never(void **state)
{
        struct fx *f = *state;
        static const struct {
                bool include_untracked;
                const char *want[10];
        } cases[] = {
                { false, { ".gitignore", "README", "bin/run.sh", "keep.log", "link", "src/main.c" } },
                { true, { ".gitignore", "README", "bin/run.sh", "keep.log", "link", "newdir/deep/x.c",
                          "notes.txt", "src/main.c" } },
        };
        char real[PATH_MAX];
        assert_non_null(realpath(f->proj, real));
        for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
                struct ws_list l;
                list_ok(f->proj, cases[c].include_untracked, &l);
                assert_string_equal(l.workdir, real);
                assert_string_equal(l.name, "proj");
                size_t n = 0;
                while (cases[c].want[n])
                        n++;
                assert_int_equal(l.n, n);
                uint64_t sum = 0;
                for (size_t i = 0; i < n; i++) {
                        assert_string_equal(l.files[i].path, cases[c].want[i]);
                        bool untracked = !strcmp(l.files[i].path, "notes.txt") ||
                                         !strcmp(l.files[i].path, "newdir/deep/x.c");
                        assert_int_equal(l.files[i].untracked, untracked);
                        sum += l.files[i].size;
                }
                assert_int_equal(l.bytes, sum);
                assert_true(l.git_bytes > 0);
                /* Ignored files and folders never go; a tracked file does
                 * although it matches an ignore rule. */
                assert_null(find(&l, "debug.log"));
                assert_null(find(&l, "build/out.o"));
                assert_null(find(&l, "build/sub/y"));
                assert_non_null(find(&l, "keep.log"));
                ws_list_release(&l);
                assert_null(l.files);
                assert_null(l.workdir);
                assert_int_equal(l.n, 0);
        }
}

static void test_list_modes_and_sizes_come_from_disk(void **state)
{
        struct fx *f = *state;
        struct ws_list l;
        list_ok(f->proj, false, &l);
        static const struct {
                const char *path;
                mode_t mode;
                uint64_t size;
        } want[] = {
                { "README", S_IFREG | 0644, 6 },
                { "bin/run.sh", S_IFREG | 0755, 18 },
                { "link", S_IFLNK, 0 },
                { "src/main.c", S_IFREG | 0644, 29 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
                const struct ws_file *wf = find(&l, want[i].path);
                assert_non_null(wf);
                assert_int_equal(wf->mode, want[i].mode);
                assert_int_equal(wf->size, want[i].size);
        }
        ws_list_release(&l);
}

static void test_list_skips_deleted_and_sizes_modified(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *gone = in(f->proj, "src/main.c");
        assert_int_equal(unlink(gone), 0);
        put(f->proj, "README", "hello, a longer line\n", 0644);
        /* Only the exec bit counts: 0700 lists as 0755. */
        put(f->proj, "keep.log", "forced\n", 0700);
        struct ws_list l;
        list_ok(f->proj, true, &l);
        assert_null(find(&l, "src/main.c"));
        assert_int_equal(find(&l, "README")->size, strlen("hello, a longer line\n"));
        assert_int_equal(find(&l, "keep.log")->mode, S_IFREG | 0755);
        ws_list_release(&l);
}

static void test_list_from_a_subfolderorfile_lists_the_whole_repo(void **state)
{
        struct fx *f = *state;
        struct ws_list top;
        list_ok(f->proj, true, &top);
        static const char *const starts[] = { "src", "newdir/deep", "build/sub", "README", ".git" };
        for (size_t i = 0; i < ARRAY_SIZE(starts); i++) {
                _cleanup_free_ char *p = in(f->proj, starts[i]);
                struct ws_list l;
                list_ok(p, true, &l);
                assert_string_equal(l.workdir, top.workdir);
                assert_int_equal(l.n, top.n);
                for (size_t j = 0; j < l.n; j++)
                        assert_string_equal(l.files[j].path, top.files[j].path);
                ws_list_release(&l);
        }
        ws_list_release(&top);
}

static void test_list_does_not_follow_a_folderturned_symlink(void **state)
{
        struct fx *f = *state;
        /* src/ becomes a symlink to a folder outside holding main.c: git
         * sees src/main.c deleted and src an untracked symlink. */
        _cleanup_free_ char *outside = in(f->dir, "outside");
        put(outside, "main.c", "outside\n", 0644);
        sh("rm -rf '%s/src' && ln -s '%s' '%s/src'", f->proj, outside, f->proj);
        struct ws_list l;
        list_ok(f->proj, true, &l);
        assert_null(find(&l, "src/main.c"));
        assert_non_null(find(&l, "src"));
        assert_int_equal(find(&l, "src")->mode, S_IFLNK);
        assert_true(find(&l, "src")->untracked);
        ws_list_release(&l);
}

static void test_list_skips_untracked_nested_repo_and_submodule(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *nested = in(f->proj, "vendor/inner");
        put(nested, "lib.c", "lib\n", 0644);
        git(nested, "init -q");
        git(nested, "add lib.c");
        git(nested, "commit -q -m lib");
        /* A gitlink in the index, as a submodule leaves it. */
        git(f->proj, "update-index --add --cacheinfo 160000,"
                     "1111111111111111111111111111111111111111,sub");
        struct ws_list l;
        list_ok(f->proj, true, &l);
        for (size_t i = 0; i < l.n; i++)
                assert_false(str_has_prefix(l.files[i].path, "vendor/") || !strcmp(l.files[i].path, "sub"));
        ws_list_release(&l);
}

static void test_list_errors(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *missing = in(f->dir, "nope");
        _cleanup_free_ char *plain = in(f->dir, "plain");
        _cleanup_free_ char *bare = in(f->dir, "bare.git");
        _cleanup_free_ char *wt = in(f->dir, "wt");
        assert_int_equal(mkdir(plain, 0755), 0);
        git(f->dir, "init -q --bare bare.git");
        git(f->proj, "worktree add -q ../wt -b wtb");
        struct {
                const char *path;
                int code;
                const char *want;
        } cases[] = {
                { missing, ENOENT, "': no such file or directory" },
                { plain, EINVAL, "': not a git repository" },
                { bare, EINVAL, "bare repository" },
                { wt, ENOTSUP, ".git is a file (linked worktree or submodule): not supported" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct ws_list l;
                struct bg_err *e = NULL;
                int r = workspace_list(cases[i].path, true, &l, &e);
                _cleanup_free_ char *named = xasprintf("workspace '%s'", cases[i].path);
                assert_non_null(e);
                assert_true(str_has_prefix(e->msg, named));
                expect_error(r, e, cases[i].code, cases[i].want);
                assert_null(l.files);
                assert_null(l.workdir);
                assert_null(l.name);
        }
}

/* ---- workspace_copy ---- */

static git_repository *open_repo(const char *path)
{
        git_repository *r = NULL;
        if (git_repository_open(&r, path) < 0)
                fail_msg("open %s: %s", path, git_error_last()->message);
        return r;
}

/* The full name of the branch HEAD points to. */
static char *head_name(const char *path)
{
        git_repository *r = open_repo(path);
        git_reference *head = NULL;
        assert_int_equal(git_repository_head(&head, r), 0);
        char *name = xstrdup(git_reference_name(head));
        git_reference_free(head);
        git_repository_free(r);
        return name;
}

/* Status entries of the repository at path, untracked and ignored ones
 * included. */
static size_t status_count(const char *path)
{
        git_repository *r = open_repo(path);
        git_status_options so;
        git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
        so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_INCLUDE_IGNORED |
                   GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS;
        git_status_list *sl = NULL;
        assert_int_equal(git_status_list_new(&sl, r, &so), 0);
        size_t n = git_status_list_entrycount(sl);
        git_status_list_free(sl);
        git_repository_free(r);
        return n;
}

static void test_copy_keeps_modes_symlinks_and_a_real_git(void **state)
{
        struct fx *f = *state;
        size_t fds = count_fds();
        struct ws_list l;
        list_ok(f->proj, false, &l);
        copy_ok(&l, f->dest);
        assert_int_equal(count_fds(), fds);
        _cleanup_free_ char *copy = in(f->dest, "proj");

        struct stat st;
        assert_int_equal(lstat(copy, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        for (size_t i = 0; i < l.n; i++) {
                _cleanup_free_ char *p = in(copy, l.files[i].path);
                assert_int_equal(lstat(p, &st), 0);
                mode_t perm = S_ISLNK(st.st_mode) ? 0 : 07777;
                assert_int_equal(st.st_mode & (S_IFMT | perm), l.files[i].mode);
                if (S_ISREG(st.st_mode)) {
                        _cleanup_free_ char *a = slurp(f->proj, l.files[i].path);
                        _cleanup_free_ char *b = slurp(copy, l.files[i].path);
                        assert_string_equal(a, b);
                }
        }
        char target[64];
        _cleanup_free_ char *link = in(copy, "link");
        assert_int_equal(readlink(link, target, sizeof target), 6);
        assert_memory_equal(target, "README", 6);
        assert_false(exists(copy, "notes.txt"));
        assert_false(exists(copy, "debug.log"));
        assert_false(exists(copy, "build"));

        /* .git keeps its modes: loose objects are read-only. */
        git_repository *repo = open_repo(copy);
        git_reference *head = NULL;
        assert_int_equal(git_repository_head(&head, repo), 0);
        char hex[GIT_OID_HEXSZ + 1];
        git_oid_tostr(hex, sizeof hex, git_reference_target(head));
        _cleanup_free_ char *obj = xasprintf(".git/objects/%.2s/%s", hex, hex + 2);
        struct stat src_st;
        _cleanup_free_ char *src_obj = in(f->proj, obj);
        _cleanup_free_ char *dst_obj = in(copy, obj);
        assert_int_equal(stat(src_obj, &src_st), 0);
        assert_int_equal(stat(dst_obj, &st), 0);
        assert_int_equal(st.st_mode & 0777, src_st.st_mode & 0777);
        assert_int_equal(st.st_mode & 0222, 0);
        git_reference_free(head);
        git_repository_free(repo);

        /* Exactly the tracked files: nothing modified, nothing extra. */
        assert_int_equal(status_count(copy), 0);
        ws_list_release(&l);
}

static void test_copy_with_untracked_carries_them_as_untracked(void **state)
{
        struct fx *f = *state;
        struct ws_list l;
        list_ok(f->proj, true, &l);
        copy_ok(&l, f->dest);
        _cleanup_free_ char *copy = in(f->dest, "proj");
        _cleanup_free_ char *x = slurp(copy, "newdir/deep/x.c");
        assert_string_equal(x, "x\n");
        assert_false(exists(copy, "build"));
        assert_int_equal(status_count(copy), 2);   /* notes.txt, newdir/deep/x.c */
        ws_list_release(&l);
}

static void test_copy_into_existing_name_fails(void **state)
{
        struct fx *f = *state;
        struct ws_list l;
        list_ok(f->proj, false, &l);
        _cleanup_free_ char *taken = in(f->dest, "proj");
        assert_int_equal(mkdir(taken, 0755), 0);
        _cleanup_close_ int fd = open(f->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct bg_err *e = NULL;
        int r = workspace_copy(&l, fd, &e);
        expect_error(r, e, EEXIST, "workspace copy: 'proj' already exists");
        /* Without an error object the code still says why. */
        assert_int_equal(workspace_copy(&l, fd, NULL), -EEXIST);
        ws_list_release(&l);
}

static void test_copy_fails_on_a_file_changed_since_listing(void **state)
{
        struct fx *f = *state;
        static const struct {
                const char *cmd;   /* run in proj after listing */
                const char *want;
        } cases[] = {
                { "rm README", "workspace copy 'README': vanished since it was listed" },
                { "rm bin/run.sh && ln -s README bin/run.sh", "'bin/run.sh': changed type since it was listed" },
                { "rm link && echo x > link", "'link': changed type since it was listed" },
                { "rm src/main.c && mkfifo src/main.c", "'src/main.c': changed type since it was listed" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                size_t fds = count_fds();
                struct ws_list l;
                list_ok(f->proj, false, &l);
                sh("cd '%s' && %s", f->proj, cases[i].cmd);
                _cleanup_free_ char *dest = xasprintf("%s/%zu", f->dest, i);
                assert_int_equal(mkdir(dest, 0755), 0);
                _cleanup_close_ int fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                struct bg_err *e = NULL;
                int r = workspace_copy(&l, fd, &e);
                expect_error(r, e, 0, cases[i].want);
                close(fd);
                fd = -1;
                assert_int_equal(count_fds(), fds);
                ws_list_release(&l);
                git(f->proj, "reset -q --hard");
        }
}

/* The copy re-checks what it is handed: a list is plain data and may not
 * come from workspace_list. */
static void test_copy_rejects_unsafe_names_and_paths(void **state)
{
        struct fx *f = *state;
        static const struct {
                const char *name;
                const char *path;
                const char *want;
        } cases[] = {
                { "a", "../escape", "workspace copy: unsafe path '../escape'" },
                { "b", "/etc/passwd", "unsafe path '/etc/passwd'" },
                { "c", "src/../../x", "unsafe path 'src/../../x'" },
                { "d", ".git/config", "unsafe path '.git/config'" },
                { "e", "sub/.GIT/hooks/x", "unsafe path 'sub/.GIT/hooks/x'" },
                { "f", "a//b", "unsafe path 'a//b'" },
                { "..", "README", "bad folder name '..'" },
                { "x/y", "README", "bad folder name 'x/y'" },
                { "", "README", "bad folder name ''" },
        };
        _cleanup_close_ int fd = open(f->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct ws_file file = { .path = (char *)cases[i].path, .mode = S_IFREG | 0644 };
                struct ws_list l = { .workdir = f->proj, .name = (char *)cases[i].name, .files = &file, .n = 1 };
                struct bg_err *e = NULL;
                int r = workspace_copy(&l, fd, &e);
                expect_error(r, e, EINVAL, cases[i].want);
        }
        /* Nothing was written outside the named folders. */
        assert_false(exists(f->dir, "escape"));
        assert_false(exists(f->dir, "x"));
}

/* As bangerd: root, fsuid switched to the owner of the folder, a HOME the
 * owner cannot read.  libgit2's ownership check and global config would
 * both fail here. */
static void test_list_copy_branch_as_the_owner_with_a_switched_fsuid(void **state)
{
        struct fx *f = *state;
        if (geteuid() != 0)
                skip();
        assert_int_equal(chmod(f->dir, 0755), 0);
        sh("chown -R 65534:65534 '%s' '%s'", f->proj, f->dest);
        setenv("HOME", "/root", 1);
        setfsgid(65534);
        setfsuid(65534);
        struct ws_list l;
        list_ok(f->proj, true, &l);
        copy_ok(&l, f->dest);
        _cleanup_free_ char *copy = in(f->dest, "proj");
        struct bg_err *e = NULL;
        int r = workspace_branch(copy, "feature", NULL, &e);
        setfsuid(0);
        setfsgid(0);
        if (r < 0)
                fail_msg("branch: %s", bg_err_msg(e));
        struct stat st;
        _cleanup_free_ char *obj_dir = in(copy, ".git/objects");
        assert_int_equal(stat(obj_dir, &st), 0);
        assert_int_equal(st.st_uid, 65534);
        _cleanup_free_ char *head = head_name(copy);
        assert_string_equal(head, "refs/heads/feature");
        ws_list_release(&l);
}

/* ---- workspace_branch ---- */

/* A second commit on top of the project, then a copy of it to branch in. */
static char *copy_with_history(struct fx *f)
{
        put(f->proj, "README", "v2\n", 0644);
        put(f->proj, "only2.txt", "2\n", 0644);
        git(f->proj, "add README only2.txt");
        git(f->proj, "commit -q -m two");
        struct ws_list l;
        list_ok(f->proj, false, &l);
        copy_ok(&l, f->dest);
        ws_list_release(&l);
        return in(f->dest, "proj");
}

static void test_branch_from_head_keeps_uncommitted_change(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *copy = copy_with_history(f);
        put(copy, "README", "local edit\n", 0644);
        put(copy, "scratch.txt", "untracked\n", 0644);
        struct bg_err *e = NULL;
        if (workspace_branch(copy, "feature", NULL, &e) < 0)
                fail_msg("branch: %s", bg_err_msg(e));
        _cleanup_free_ char *head = head_name(copy);
        assert_string_equal(head, "refs/heads/feature");
        _cleanup_free_ char *readme = slurp(copy, "README");
        assert_string_equal(readme, "local edit\n");
        assert_true(exists(copy, "scratch.txt"));

        /* Naming HEAD's commit another way is the same case. */
        if (workspace_branch(copy, "feature2", "main", &e) < 0)
                fail_msg("branch: %s", bg_err_msg(e));
        _cleanup_free_ char *readme2 = slurp(copy, "README");
        assert_string_equal(readme2, "local edit\n");
}

static void test_branch_from_anothercommit_switches_the_tree(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *copy = copy_with_history(f);
        put(copy, "scratch.txt", "untracked\n", 0644);
        struct bg_err *e = NULL;
        if (workspace_branch(copy, "old", "HEAD~1", &e) < 0)
                fail_msg("branch: %s", bg_err_msg(e));
        _cleanup_free_ char *head = head_name(copy);
        assert_string_equal(head, "refs/heads/old");
        _cleanup_free_ char *readme = slurp(copy, "README");
        assert_string_equal(readme, "hello\n");
        assert_false(exists(copy, "only2.txt"));
        assert_true(exists(copy, "scratch.txt"));
        assert_int_equal(status_count(copy), 1);   /* scratch.txt only */
}

static void test_branch_errors(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *copy = copy_with_history(f);
        static const struct {
                const char *branch;
                const char *from;
                int code;
                const char *want;
        } cases[] = {
                { "x", "no-such-ref", EINVAL, "workspace: --from 'no-such-ref' does not name a commit" },
                { "x", "HEAD^{tree}", EINVAL, "--from 'HEAD^{tree}' does not name a commit" },
                { "main", NULL, EEXIST, "workspace: branch 'main' already exists" },
                { "bad..name", NULL, EINVAL, "invalid branch name 'bad..name'" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct bg_err *e = NULL;
                int r = workspace_branch(copy, cases[i].branch, cases[i].from, &e);
                expect_error(r, e, cases[i].code, cases[i].want);
        }
        _cleanup_free_ char *missing = in(f->dir, "nope");
        struct bg_err *e = NULL;
        int r = workspace_branch(missing, "x", NULL, &e);
        expect_error(r, e, 0, "open repository");
        _cleanup_free_ char *head = head_name(copy);
        assert_string_equal(head, "refs/heads/main");
}

static void test_branch_checkout_conflict_changes_nothing(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ char *copy = copy_with_history(f);
        put(copy, "README", "local edit\n", 0644);
        struct bg_err *e = NULL;
        int r = workspace_branch(copy, "old", "HEAD~1", &e);
        expect_error(r, e, EBUSY,
                     "checkout 'old': the working tree has changes that would be overwritten: 'README'");
        _cleanup_free_ char *head = head_name(copy);
        assert_string_equal(head, "refs/heads/main");
        _cleanup_free_ char *readme = slurp(copy, "README");
        assert_string_equal(readme, "local edit\n");
        /* The branch was not left behind: the same call works once the
         * change is gone. */
        put(copy, "README", "v2\n", 0644);
        if (workspace_branch(copy, "old", "HEAD~1", &e) < 0)
                fail_msg("branch: %s", bg_err_msg(e));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_list_tracked_by_default_untracked_with_flag_ignored_never),
                T(test_list_modes_and_sizes_come_from_disk),
                T(test_list_skips_deleted_and_sizes_modified),
                T(test_list_from_a_subfolderorfile_lists_the_whole_repo),
                T(test_list_does_not_follow_a_folderturned_symlink),
                T(test_list_skips_untracked_nested_repo_and_submodule),
                T(test_list_errors),
                T(test_copy_keeps_modes_symlinks_and_a_real_git),
                T(test_copy_with_untracked_carries_them_as_untracked),
                T(test_copy_into_existing_name_fails),
                T(test_copy_fails_on_a_file_changed_since_listing),
                T(test_copy_rejects_unsafe_names_and_paths),
                T(test_list_copy_branch_as_the_owner_with_a_switched_fsuid),
                T(test_branch_from_head_keeps_uncommitted_change),
                T(test_branch_from_anothercommit_switches_the_tree),
                T(test_branch_errors),
                T(test_branch_checkout_conflict_changes_nothing),
        };
#undef T
        return cmocka_run_group_tests_name("workspace", tests, NULL, NULL);
}
