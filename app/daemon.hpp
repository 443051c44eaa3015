#pragma once

#include "config/taskmaster_config.hpp"

namespace taskmaster {

/// Limits malloc arenas (see daemon.cpp). Call before any thread starts.
void tune_malloc();

/// Opens /dev/null on whichever of descriptors 0, 1 and 2 is closed, so no
/// later descriptor (a task's output pipe) takes their place.
void open_standard_descriptors();

/// Blocks SIGTERM/SIGINT in every thread (the main thread waits for them
/// with sigwait) and ignores SIGPIPE. Call before any thread starts.
void block_shutdown_signals();

/// Runs the role in `cfg` (standalone, master or worker) until SIGTERM or
/// SIGINT; returns the process exit code.
int run_daemon(taskmaster_config& cfg);

} // namespace taskmaster
