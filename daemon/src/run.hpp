#pragma once

#include "workflowd/daemon/config.hpp"

namespace workflowd::daemon {

// `workflowd run`: wires the pipeline and serves until SIGTERM/SIGINT. Returns the exit code.
int RunDaemon(const Config& config);

}  // namespace workflowd::daemon
