/* fuzz_lww.c -- fuzz target for conflict/'s version text form (lww_version_parse/format).
 *
 * Input: one or two version texts separated by the first '\n' (the rest is ignored
 * after a NUL). Checks: parsing never crashes; a parsed text formats back to exactly
 * itself (the text form is canonical) and parses to the same version; for two valid
 * versions the sign of lww_version_compare equals the sign of strcmp of the texts, and
 * lww_decide agrees with it; a clock that observed a version issues a greater one. */
#include <string.h>

#include "fuzz.h"
#include "lww.h"

static int lww_sign(int x) { return (x > 0) - (x < 0); }

/* Parses s; on success checks the format/parse round trip. Returns 1 if valid. */
static int lww_check_one(const char *s, lww_version *v)
{
    char err[160], buf[LWW_VERSION_STRLEN];
    lww_version again;
    if (lww_version_parse(s, v, err, sizeof err) != 0) {
        if (!err[0])
            fuzz_fail("lww_version_parse failed without a reason");
        return 0;
    }
    if (!lww_region_valid(v->region))
        fuzz_fail("parsed region \"%s\" is not valid", v->region);
    if (lww_version_format(v, buf, sizeof buf) != 0)
        fuzz_fail("parsed version \"%s\" does not format", s);
    if (strcmp(buf, s) != 0)
        fuzz_fail("\"%s\" formats back as \"%s\"", s, buf);
    if (lww_version_parse(buf, &again, err, sizeof err) != 0 ||
        lww_version_compare(v, &again) != 0)
        fuzz_fail("\"%s\" does not parse back to the same version", buf);
    /* a too-small buffer must fail cleanly, with "" */
    if (lww_version_format(v, buf, strlen(s)) == 0 || buf[0] != '\0')
        fuzz_fail("format into %zu bytes did not fail cleanly", strlen(s));
    return 1;
}

int fuzz_lww(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    char *a = text, *b = NULL, *nl = strchr(text, '\n');
    if (nl) {
        *nl = '\0';
        b = nl + 1;
    }
    lww_version va, vb;
    int oka = lww_check_one(a, &va);
    int okb = b ? lww_check_one(b, &vb) : 0;
    (void)lww_region_valid(a);
    if (oka && okb) {
        int c = lww_sign(lww_version_compare(&va, &vb));
        if (c != lww_sign(strcmp(a, b)))
            fuzz_fail("compare(%s, %s) = %d disagrees with strcmp", a, b, c);
        if (c != -lww_sign(lww_version_compare(&vb, &va)))
            fuzz_fail("compare is not antisymmetric on %s, %s", a, b);
        lww_decision d = lww_decide(&va, &vb);
        if ((c > 0 && d != LWW_APPLY) || (c < 0 && d != LWW_LOSE) || (c == 0 && d != LWW_SAME))
            fuzz_fail("decide(%s, %s) = %s disagrees with compare %d", a, b,
                      lww_decision_name(d), c);
    }
    if (oka) {
        lww_clock *clk = lww_clock_new("fuzz-region");
        if (clk) {
            lww_version now, last;
            lww_clock_observe(clk, &va);
            lww_clock_now(clk, 0, &now);
            lww_clock_last(clk, &last);
            int saturated = va.ms == LWW_MS_MAX && va.counter == LWW_COUNTER_MAX;
            if (!saturated && lww_version_compare(&now, &va) <= 0)
                fuzz_fail("clock issued a version not above observed %s", a);
            if (!saturated && lww_version_compare(&last, &now) != 0)
                fuzz_fail("clock last differs from the version it issued");
            if (lww_ahead(&va, 0, UINT64_MAX) != 0)
                fuzz_fail("lww_ahead overflowed for %s", a);
            lww_clock_free(clk);
        }
    }
    free(text);
    return 0;
}

TERN_FUZZ_ENTRY(fuzz_lww)
