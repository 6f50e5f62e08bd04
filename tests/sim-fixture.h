/* SPDX-License-Identifier: MIT */
/*
 * Runs the real wave-sim binary for a test and talks to its /sim/ control
 * API (see docs/wave-sim.md).
 *
 *   g_autoptr (SimFixture) sim = sim_fixture_new (NULL, &error);
 *   ws = sim_fixture_dup_ws_url (sim, SIM_FIXTURE_DEFAULT_KEY);
 *   sim_fixture_post (sim, "/sim/close", "{\"code\":4500}", &error);
 *   g_autoptr (JsonObject) stats = sim_fixture_get_stats (sim, &error);
 *
 * The control calls are synchronous: they block the calling thread (not
 * the simulator), which is what a test step wants. They use a private
 * SoupSession, so they never interfere with the test's own connections.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* The key wave-sim accepts when started without --api-key / --any-key. */
#define SIM_FIXTURE_DEFAULT_KEY "wave_test_key"

typedef struct _SimFixture SimFixture;

/* WB_BUILD_DIR/sim/wave-sim (WB_SIM_BINARY overrides it). */
char *sim_fixture_dup_binary_path (void);

/* Spawns wave-sim with @args (NULL-terminated, may be NULL; e.g.
 * {"--streams", "2", "--speed", "10", NULL}) and waits for the start-up
 * lines on its stdout. Its stderr goes to the test's stderr. */
SimFixture *sim_fixture_new (const char *const *args, GError **error);
/* Stops the simulator (SIGTERM, then SIGKILL after a deadline). */
void sim_fixture_free (SimFixture *fixture);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SimFixture, sim_fixture_free)

/* SIGTERM and wait; TRUE when wave-sim exited with status 0. */
gboolean sim_fixture_stop (SimFixture *fixture, GError **error);

/* "ws://127.0.0.1:PORT/v1/streams" (wss:// with TLS), as printed. */
const char *sim_fixture_get_url (SimFixture *fixture);
/* The URL with "?api_key=KEY" appended (@api_key NULL: no key at all). */
char *sim_fixture_dup_ws_url (SimFixture *fixture, const char *api_key);
/* "http://127.0.0.1:PORT" (https:// with TLS). */
const char *sim_fixture_get_http_base (SimFixture *fixture);
guint16 sim_fixture_get_port (SimFixture *fixture);
/* The simulated stream ids, in the order printed; NULL-terminated. */
const char *const *sim_fixture_get_stream_ids (SimFixture *fixture);
const char *sim_fixture_get_stream_id (SimFixture *fixture, guint index);

/* With TLS: the CA the control session must trust (call before any request). */
void sim_fixture_set_tls_database (SimFixture *fixture, GTlsDatabase *database);

/* Any control request: the parsed JSON answer (NULL if not JSON) and the
 * HTTP status, whatever it is. @body may be NULL (GET). */
JsonObject *sim_fixture_request (SimFixture *fixture, const char *method, const char *path,
                                 const char *body, guint *out_status, GError **error);
/* POST @body to @path; fails unless the answer is 200 with "ok":true. */
JsonObject *sim_fixture_post (SimFixture *fixture, const char *path, const char *body,
                              GError **error);
/* GET /sim/stats; fails unless the answer is 200 with "ok":true. */
JsonObject *sim_fixture_get_stats (SimFixture *fixture, GError **error);

G_END_DECLS
