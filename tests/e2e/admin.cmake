# The admin endpoint of the running daemon (metrics/, daemon/src/run.cpp): lag series follow the
# assignment across a rebalance; scrapes during shutdown.
workflowd_test(admin_e2e_test e2e
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/admin_e2e_test.cpp
  LIBS PkgConfig::PQXX PkgConfig::RDKAFKA PkgConfig::CPP_HTTPLIB nlohmann_json::nlohmann_json)
target_compile_definitions(admin_e2e_test PRIVATE WORKFLOWD_BINARY="$<TARGET_FILE:workflowd>")
add_dependencies(admin_e2e_test workflowd)
