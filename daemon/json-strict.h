/* SPDX-License-Identifier: MIT */
/*
 * RFC 8259 JSON, checked on the raw bytes before json-glib parses them.
 *
 * json-glib 1.6 reads far more than JSON and says nothing: hexadecimal
 * (0x10), '$ff', binary (0b101) and octal (017 is 15) numbers, leading
 * zeros, ".5", "1.", raw control characters in strings, unknown escapes
 * ("\x41" becomes "x41"), a byte-order mark, single-quoted strings and
 * comments; it wraps integers past 64 bits (99999999999999999999 is -1),
 * cuts a string at "\u0000", and keeps the last of two members of the same
 * name. The bridge would then act on one reading and forward text that
 * other parsers read differently or refuse.
 *
 * wb_json_strict_check() accepts exactly RFC 8259's grammar (one value,
 * whitespace being space, tab, CR and LF), and refuses besides what the
 * bridge cannot carry faithfully: escaped surrogates that do not form a
 * pair (§8.2: not Unicode), integers outside the signed 64-bit range and
 * numbers too large for a double, the same member name twice in one object
 * (RFC 7493, I-JSON, §2.3), "\u0000" (WB_JSON_STRICT_ERROR_NUL: valid JSON
 * that json-glib cannot hold), and nesting deeper than @max_depth. Text that
 * passes reads the same in json-glib, in Python's json and in a browser.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define WB_JSON_STRICT_ERROR (wb_json_strict_error_quark ())
GQuark wb_json_strict_error_quark (void);

typedef enum
{
  WB_JSON_STRICT_ERROR_SYNTAX,    /* not RFC 8259 JSON */
  WB_JSON_STRICT_ERROR_ENCODING,  /* not UTF-8 (or a NUL byte); an escaped lone surrogate */
  WB_JSON_STRICT_ERROR_TOO_DEEP,  /* nested deeper than max_depth */
  WB_JSON_STRICT_ERROR_RANGE,     /* integer outside gint64, number overflowing a double */
  WB_JSON_STRICT_ERROR_DUPLICATE, /* a member name twice in one object */
  WB_JSON_STRICT_ERROR_NUL,       /* "\u0000" in a string; reported only if nothing else is wrong */
} WbJsonStrictError;

/* TRUE if @data (@length bytes, need not be NUL-terminated) is one JSON
 * value by the rules above. Messages name the byte offset of the problem
 * and never repeat the input. */
gboolean wb_json_strict_check (const char *data, gsize length, guint max_depth, GError **error);

G_END_DECLS
