# Batch planning (consumers/): records -> execution rows, dead letters and counts.
workflowd_test(batch_planner_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/batch_planner_test.cpp
  LIBS workflowd_consumers)
