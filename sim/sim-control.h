/* SPDX-License-Identifier: MIT */
/*
 * The /sim/ HTTP control API of wave-sim (fault injection, exact events,
 * floods for benchmarks, stream toggles, stats), served on the same port as
 * the WebSocket. See docs/wave-sim.md.
 */
#pragma once

#include "sim-server.h"
#include "sim-streams.h"

G_BEGIN_DECLS

#define SIM_CONTROL_PREFIX "/sim"
#define SIM_CONTROL_MAX_BODY_BYTES (1024 * 1024)
#define SIM_FLOOD_MAX_ACTIVE 8
#define SIM_FLOOD_MAX_COUNT 1000000
#define SIM_FLOOD_MAX_RATE 100000
#define SIM_FLOOD_MAX_SIZE (256 * 1024)
#define SIM_REJECT_MAX_COUNT 100000

typedef struct _SimControl SimControl;

/* Registers the /sim/ handlers on @server's SoupServer. */
SimControl *sim_control_new (SimServer *server, SimStreams *streams);
void sim_control_free (SimControl *control);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SimControl, sim_control_free)

G_END_DECLS
