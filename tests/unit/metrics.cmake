# Metrics registry and Prometheus text exposition (metrics/).
workflowd_test(metrics_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/metrics_test.cpp
  LIBS workflowd_metrics)
