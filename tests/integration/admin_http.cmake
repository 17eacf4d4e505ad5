# Admin HTTP server (metrics/) over loopback; checks /metrics with `promtool check metrics`
# (Debian package `prometheus`, installed by scripts/install-deps.sh).
workflowd_test(admin_http_test integration
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/admin_http_test.cpp
  LIBS workflowd_admin_http PkgConfig::CPP_HTTPLIB nlohmann_json::nlohmann_json)
