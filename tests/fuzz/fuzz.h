/* fuzz.h -- the fuzz targets of Tern (tests/fuzz/, see tests/fuzz/README.md).
 *
 * Each target is a plain function over arbitrary bytes, fuzz_<name>(data, size), that
 * runs one module's code paths on the input and checks invariants (round trips,
 * determinism). It returns 0; a broken invariant calls fuzz_fail(), which prints the
 * reason and abort()s, so libFuzzer records the input as a crash and the cmocka
 * regression test (tests/unit/test_fuzz_regressions.c) fails.
 *
 * fuzz_<name>.c compiles its libFuzzer entry point (LLVMFuzzerTestOneInput) only with
 * -DTERN_FUZZ_LIBFUZZER; without it the file is a plain source that the regression test
 * includes. Static helpers are prefixed per target so several files fit in one unit.
 *
 * Threading: targets are called from one thread; the config target keeps a private
 * temp directory for the process (created on first use, removed at exit). */
#ifndef TERN_FUZZ_H
#define TERN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int fuzz_wire(const uint8_t *data, size_t size);
int fuzz_item(const uint8_t *data, size_t size);
int fuzz_stream_records(const uint8_t *data, size_t size);
int fuzz_config(const uint8_t *data, size_t size);
int fuzz_sigv4(const uint8_t *data, size_t size);
int fuzz_lww(const uint8_t *data, size_t size);

#ifndef TERN_FUZZ_FAIL_DEFINED
#define TERN_FUZZ_FAIL_DEFINED
/* Reports a broken invariant and aborts (a crash for libFuzzer, a failure for cmocka). */
#define fuzz_fail(...)                                                          \
    do {                                                                        \
        fprintf(stderr, "fuzz invariant broken at %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                    \
        abort();                                                                \
    } while (0)
#endif

/* Returns a malloc'd NUL-terminated copy of data (NULL on allocation failure). Bytes
 * after an embedded NUL are simply not seen by C-string consumers. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < size; i++)
        s[i] = (char)data[i];
    s[size] = '\0';
    return s;
}

#ifdef TERN_FUZZ_LIBFUZZER
#define TERN_FUZZ_ENTRY(fn)                                                    \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);              \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)               \
    {                                                                          \
        return fn(data, size);                                                 \
    }
#else
#define TERN_FUZZ_ENTRY(fn)
#endif

#endif
