/* SPDX-License-Identifier: MIT */
/*
 * Text from outside the bridge: the rules it is held to before it reaches
 * anything the bridge publishes.
 *
 *  - Free text the server chooses (HTTP reason phrases, close reasons,
 *    `error` messages) and texts derived from the network (TLS and resolver
 *    errors) go into `bridge.status`, D-Bus properties, sd_notify STATUS=
 *    and the journal. wb_text_sanitize() makes them valid UTF-8, replaces
 *    every character none of those can safely carry with U+FFFD and bounds
 *    their length.
 *  - Identifiers (stream ids) become hash keys, JSON strings, D-Bus strings,
 *    D-Bus object paths and log words. wb_text_check_identifier() refuses
 *    the ones that any of them cannot carry as they are.
 *
 * One predicate, wb_unichar_is_unsafe(), says which characters those are.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The longest free text from outside the bridge keeps (bytes, U+2026 "…"
 * included when it was cut). A close reason is at most 123 bytes by RFC
 * 6455; everything else has no bound but this. */
#define WB_TEXT_MAX_BYTES 512

/* Characters no text from outside may carry into status, D-Bus, sd_notify,
 * logs or an identifier: controls (C0, DEL, C1: general category Cc) and
 * the line and paragraph separators U+2028, U+2029 (they break lines and
 * forge log entries), and noncharacters (U+FDD0…U+FDEF and U+xFFFE, U+xFFFF
 * of every plane), which sd-bus refuses in D-Bus strings. */
gboolean wb_unichar_is_unsafe (gunichar c);
/* Only the noncharacters of the above. */
gboolean wb_unichar_is_noncharacter (gunichar c);

/* A copy of @length bytes of @text (-1: up to NUL; NULL gives "") that is
 * valid UTF-8 (each invalid sequence, and a NUL inside @length, becomes
 * U+FFFD), with every unsafe character replaced by U+FFFD, cut at a
 * character boundary to at most @max_bytes (>= 4) with "…" at the end when
 * anything was cut. Free with g_free(). */
char *wb_text_sanitize (const char *text, gssize length, gsize max_bytes);

/* TRUE if @text may be an identifier: 1 to @max_bytes bytes of valid UTF-8
 * without unsafe characters and without format characters (general
 * category Cf: bidi overrides, zero-width spaces, the BOM…), which would
 * let one id pass for another where people read them. Otherwise FALSE with
 * @out_problem (optional) set to a static phrase for an error message ("is
 * empty", "contains a control character" …). */
gboolean wb_text_check_identifier (const char *text, gsize max_bytes, const char **out_problem);

G_END_DECLS
