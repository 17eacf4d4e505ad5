// Process-wide log setup: text (human) or JSON lines (one object per line, for log shippers).
#pragma once

#include <string>

namespace workflowd::daemon {

// level: trace|debug|info|warn|error; format: text|json. Logs go to stderr (journald, kubectl).
void SetupLogging(const std::string& level, const std::string& format);

}  // namespace workflowd::daemon
