# Deployment end-to-end tests (issue 5): the sd_notify protocol through a real NOTIFY_SOCKET, and
# the live /metrics linted by promtool and checked against deploy/monitoring/metrics.txt.
workflowd_test(systemd_e2e_test e2e
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/systemd_e2e_test.cpp
  LIBS PkgConfig::PQXX PkgConfig::RDKAFKA PkgConfig::CPP_HTTPLIB nlohmann_json::nlohmann_json)
target_compile_definitions(systemd_e2e_test PRIVATE WORKFLOWD_BINARY="$<TARGET_FILE:workflowd>")
add_dependencies(systemd_e2e_test workflowd)

workflowd_test(metrics_lint_e2e_test e2e
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/metrics_lint_e2e_test.cpp
  LIBS PkgConfig::PQXX PkgConfig::RDKAFKA PkgConfig::CPP_HTTPLIB nlohmann_json::nlohmann_json)
target_compile_definitions(metrics_lint_e2e_test PRIVATE
  WORKFLOWD_BINARY="$<TARGET_FILE:workflowd>"
  WORKFLOWD_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
add_dependencies(metrics_lint_e2e_test workflowd)
