// The `workflowd` command line: verbs, flags, exit codes.
#pragma once

namespace workflowd::daemon {

// Exit codes: 0 success, 1 runtime failure (e.g. database unreachable), 2 usage or configuration
// error (the message names the bad input), 3 the operation was refused (not found in that tenant x
// environment, or not allowed in the current state).
int RunCli(int argc, char** argv);

}  // namespace workflowd::daemon
