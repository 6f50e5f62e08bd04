/* SPDX-License-Identifier: MIT */
/*
 * The json-glib tree of a text that passed wb_json_strict_check(), built
 * without JsonParser: json-glib 1.6 tokenizes with a GScanner that cost
 * about half of the daemon's instructions per upstream event. The tree is
 * the one json_parser_new_immutable() would build (tests/test-json-strict.c
 * holds the two to agreement, node types included), sealed.
 */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* @data (@length bytes, no NUL needed) must be strict JSON: the caller
 * checked it with wb_json_strict_check(). Returns a new, sealed node. */
JsonNode *wb_json_tree_new (const char *data, gsize length);

G_END_DECLS
