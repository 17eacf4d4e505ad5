# The HTTP server's router and wire format (http/), without sockets.
workflowd_test(http_unit_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/http_router_test.cpp ${CMAKE_CURRENT_SOURCE_DIR}/http_wire_test.cpp
  LIBS workflowd_http nlohmann_json::nlohmann_json)
target_include_directories(http_unit_test PRIVATE ${PROJECT_SOURCE_DIR}/http/src)
