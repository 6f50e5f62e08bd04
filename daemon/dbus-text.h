/* SPDX-License-Identifier: MIT */
/*
 * Making text carryable on D-Bus. sd-bus refuses a string that is not
 * valid UTF-8 or holds a Unicode noncharacter (U+FDD0…U+FDEF, U+xFFFE,
 * U+xFFFF): a signal carrying one is never sent, a property holding one
 * fails the whole Get/GetAll/GetManagedObjects for every caller, and the
 * InterfacesAdded that would list it is lost. Free text the bridge
 * publishes on the bus (chat messages, user names, anything upstream sent)
 * goes through wb_dbus_text_carryable(): what D-Bus cannot carry becomes
 * U+FFFD there, while the socket still delivers the text intact.
 * Identifiers never need it: text.h's rule already excludes noncharacters.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* TRUE if sd-bus accepts @text as a D-Bus string ('s', 'o' content aside). */
gboolean wb_dbus_text_is_carryable (const char *text);

/* @text itself when carryable ("" for NULL); otherwise a copy in which
 * every invalid sequence and every noncharacter is U+FFFD, added to @keep
 * (a GPtrArray freeing with g_free) so it lives as long as the caller needs. */
const char *wb_dbus_text_carryable (const char *text, GPtrArray *keep);

G_END_DECLS
