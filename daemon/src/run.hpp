#pragma once

#include <memory>

#include "workflowd/daemon/config.hpp"
#include "workflowd/providers/registry.hpp"

namespace workflowd::daemon {

// The workflow providers a daemon with `config` offers (`providers.*`). `for_checks`: only to
// validate definitions (no start log is opened, nothing is started).
std::shared_ptr<providers::Registry> ProviderRegistryFor(const Config& config,
                                                         bool for_checks = false);

// `workflowd run`: wires the pipeline and serves until SIGTERM/SIGINT. Returns the exit code.
int RunDaemon(const Config& config);

}  // namespace workflowd::daemon
