/* test_fuzz_regressions.c -- replays the fuzz corpora through the fuzz target bodies.
 *
 * For every target (wire, item, stream_records, config, sigv4, lww) runs each file of
 * tests/fuzz/regressions/<target>/ (inputs that once crashed, leaked or broke an
 * invariant; kept after the fix) and tests/fuzz/corpus/<target>/ (the seeds) through
 * fuzz_<target>(), the same code libFuzzer runs (tests/fuzz/fuzz_<target>.c, included
 * here without TERN_FUZZ_LIBFUZZER). A broken invariant aborts with the reason; under
 * the ASan/UBSan build (-DTERN_SANITIZE=ON) memory errors and leaks fail too.
 * The source tree is $TERN_SRC (set by ctest), else found from this file's path.
 * Fails if a target has no input at all (a missing corpus means a broken checkout). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_item.c"
#include "../fuzz/fuzz_lww.c"
#include "../fuzz/fuzz_sigv4.c"
#include "../fuzz/fuzz_stream_records.c"
#include "../fuzz/fuzz_wire.c"

static char fuzz_root[PATH_MAX];

static int setup_root(void **state)
{
    (void)state;
    const char *src = getenv("TERN_SRC");
    if (src && *src) {
        snprintf(fuzz_root, sizeof fuzz_root, "%s/tests/fuzz", src);
    } else {
        /* __FILE__ is .../tests/unit/test_fuzz_regressions.c */
        snprintf(fuzz_root, sizeof fuzz_root, "%s", __FILE__);
        char *slash = strrchr(fuzz_root, '/');
        if (!slash)
            return -1;
        *slash = '\0';
        strncat(fuzz_root, "/../fuzz", sizeof fuzz_root - strlen(fuzz_root) - 1);
    }
    return 0;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Runs every regular file of <fuzz_root>/<kind>/<target>/ through fn; returns how many. */
static size_t run_dir(const char *kind, const char *target, int (*fn)(const uint8_t *, size_t))
{
    char dir[PATH_MAX + 128];
    snprintf(dir, sizeof dir, "%s/%s/%s", fuzz_root, kind, target);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX + 512];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        size_t len = 0;
        unsigned char *buf = read_all(path, &len);
        if (!buf)
            fail_msg("cannot read %s", path);
        print_message("%s/%s/%s\n", kind, target, e->d_name);
        assert_int_equal(fn(buf, len), 0);
        free(buf);
        count++;
    }
    closedir(d);
    return count;
}

static void run_target(const char *target, int (*fn)(const uint8_t *, size_t))
{
    size_t n = run_dir("regressions", target, fn) + run_dir("corpus", target, fn);
    if (n == 0)
        fail_msg("no inputs for %s under %s (corpus/ and regressions/)", target, fuzz_root);
    /* the empty input and a lone byte are always worth a run */
    assert_int_equal(fn((const uint8_t *)"", 0), 0);
    assert_int_equal(fn((const uint8_t *)"{", 1), 0);
}

static void test_wire(void **state) { (void)state; run_target("wire", fuzz_wire); }
static void test_item(void **state) { (void)state; run_target("item", fuzz_item); }
static void test_stream_records(void **state) { (void)state; run_target("stream_records", fuzz_stream_records); }
static void test_config(void **state) { (void)state; run_target("config", fuzz_config); }
static void test_sigv4(void **state) { (void)state; run_target("sigv4", fuzz_sigv4); }
static void test_lww(void **state) { (void)state; run_target("lww", fuzz_lww); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire),   cmocka_unit_test(test_item),
        cmocka_unit_test(test_stream_records), cmocka_unit_test(test_config),
        cmocka_unit_test(test_sigv4),  cmocka_unit_test(test_lww),
    };
    return cmocka_run_group_tests(tests, setup_root, NULL);
}
