#include "workflowd/daemon/cli.hpp"

// jemalloc, the daemon's allocator (daemon/CMakeLists.txt), reads this when it starts; MALLOC_CONF
// in the environment still overrides it. Freed pages go back to the system after 1 s instead of
// jemalloc's 10 s, so the peak RSS stays close to what the daemon uses: after loading 100,000
// definitions and ingesting with them, 122 MB instead of 152 MB with jemalloc's defaults (the
// glibc allocator: 120 MB, at a far higher CPU cost).
extern "C" {
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables): jemalloc's documented hook
const char* malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:0";
}

int main(int argc, char** argv) { return workflowd::daemon::RunCli(argc, argv); }
