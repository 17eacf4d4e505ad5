#pragma once

#include <memory>

#include "workflowd/daemon/config.hpp"
#include "workflowd/providers/registry.hpp"

namespace workflowd::daemon {

// The workflow providers a daemon with `config` offers (`providers.*`).
std::shared_ptr<providers::Registry> ProviderRegistryFor(const Config& config);

// `workflowd run`: wires the pipeline and serves until SIGTERM/SIGINT. Returns the exit code.
int RunDaemon(const Config& config);

}  // namespace workflowd::daemon
