# The HTTP server (http/) over loopback, with trivial handlers: routing, lifecycle, limits,
# eviction, timeouts.
workflowd_test(http_server_test integration
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/http_server_test.cpp
  LIBS workflowd_http PkgConfig::CPP_HTTPLIB nlohmann_json::nlohmann_json)
# The admin endpoint (daemon/src/admin_endpoint.hpp) over loopback; checks /metrics with
# `promtool check metrics` (Debian package `prometheus`, installed by scripts/install-deps.sh).
workflowd_test(admin_http_test integration
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/admin_http_test.cpp
  LIBS workflowd_daemon workflowd_http workflowd_metrics PkgConfig::CPP_HTTPLIB
       nlohmann_json::nlohmann_json)
target_include_directories(admin_http_test PRIVATE ${PROJECT_SOURCE_DIR}/daemon/src)
