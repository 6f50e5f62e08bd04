/* SPDX-License-Identifier: MIT */
/*
 * Shared by the fuzz targets (tests/fuzz/fuzz-*.c): each defines
 * LLVMFuzzerTestOneInput and is built two ways (tests/fuzz/meson.build):
 *
 *  - the default build links fuzz-replay.c, a main() that replays the
 *    checked-in corpus (tests/corpus/NAME) as a TAP test of the unit suite,
 *    so every CI run, and the ASan/UBSan one, covers the known inputs;
 *  - -Dfuzzing=true (clang) links libFuzzer instead: coverage-guided, with
 *    ASan and UBSan, run for a bounded time by the `fuzz` suite.
 *
 * A target states what must hold for every input with FUZZ_CHECK; a failed
 * check aborts, which libFuzzer reports as a crash and saves the input.
 */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_CHECK(condition)                                                                      \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (!(condition))                                                                              \
      wb_fuzz_fail (__FILE__, __LINE__, "invariant failed: %s", #condition);                       \
  }                                                                                                \
  G_STMT_END

G_NORETURN void wb_fuzz_fail (const char *file, int line, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

/* Once per process: hostile input makes the daemon's modules log warnings
 * by design, so messages up to warnings are dropped (they would dominate
 * the run time); a critical (a failed g_return_if_fail: a programming
 * error) aborts like a failed check. */
void wb_fuzz_init_logging (void);

/* ---- strict JSON: what the strictest consumer of a line accepts ---------- */

typedef enum
{
  WB_FUZZ_JSON_OK,
  WB_FUZZ_JSON_BAD_UTF8,       /* not UTF-8 (or a NUL byte) */
  WB_FUZZ_JSON_SYNTAX,         /* not the RFC 8259 grammar */
  WB_FUZZ_JSON_CONTROL_CHAR,   /* U+0000..U+001F raw inside a string */
  WB_FUZZ_JSON_BAD_ESCAPE,     /* \x, \', \u12 ... */
  WB_FUZZ_JSON_LONE_SURROGATE, /* \ud800 without its pair, or a lone \udc00 */
  WB_FUZZ_JSON_BAD_NUMBER,     /* 0x10, 0123, .5, 1., +1, NaN */
  WB_FUZZ_JSON_DUPLICATE_KEY,  /* {"a":1,"a":2}: consumers disagree which wins */
  WB_FUZZ_JSON_TOO_DEEP,       /* past WB_FUZZ_JSON_MAX_DEPTH */
  WB_FUZZ_JSON_N_RESULTS
} WbFuzzJsonResult;

/* Deeper than any line the bridge may emit (it refuses past 32). */
#define WB_FUZZ_JSON_MAX_DEPTH 64

/* Checks that @text is exactly one RFC 8259 JSON value (surrounded by
 * optional whitespace), UTF-8, with unique member names and paired
 * surrogate escapes (RFC 7493, I-JSON). @out_offset: where it failed. */
WbFuzzJsonResult wb_fuzz_json_check (const char *text, gsize length, gsize *out_offset);
const char *wb_fuzz_json_result_to_string (WbFuzzJsonResult result);

/* ---- text the D-Bus frontend may have to carry --------------------------- */

/* TRUE if sd-bus accepts @text as a string argument (it refuses invalid
 * UTF-8 and the Unicode noncharacters U+FDD0..U+FDEF, U+xFFFE, U+xFFFF). */
gboolean wb_fuzz_dbus_accepts_string (const char *text);

/* ---- faults known, owned by another branch ------------------------------- */

/*
 * A fault a target finds but that is being fixed elsewhere is tolerated,
 * named, and counted, so fuzzing keeps searching the rest of the input
 * space and CI stays meaningful. Each gap says where its fix comes from;
 * delete it when the fix lands. WB_FUZZ_NO_KNOWN_GAPS=1 makes them fatal
 * again (to reproduce, or to check a fix).
 */
typedef enum
{
  /* Closed: configuration errors quoted the file's bytes as they were
   * (not UTF-8 in the log); config.c sanitizes them now and fuzz-config
   * checks it hard. Kept as the mechanism's one entry for the next gap
   * (C has no empty enum or array); nothing reports it any more. */
  WB_FUZZ_GAP_CONFIG_ERROR_NOT_UTF8,
  WB_FUZZ_N_GAPS
} WbFuzzGap;

/* The check every line the bridge wrote itself must pass: strict JSON.
 * @what names the line in a failure. */
void wb_fuzz_check_serialized (const char *text, gsize length, const char *what);

/* Returns if @gap is tolerated (reporting it once per process), else fails
 * like FUZZ_CHECK with @what. */
#define FUZZ_KNOWN_GAP(gap, ...) wb_fuzz_known_gap (__FILE__, __LINE__, (gap), __VA_ARGS__)
void wb_fuzz_known_gap (const char *file, int line, WbFuzzGap gap, const char *format, ...)
    G_GNUC_PRINTF (4, 5);
/* How often each gap was met in this process (the replay driver prints it). */
guint64 wb_fuzz_known_gap_count (WbFuzzGap gap);
const char *wb_fuzz_known_gap_name (WbFuzzGap gap);

G_END_DECLS
