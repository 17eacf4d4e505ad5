# The event pipeline (pipeline/): batch planning (records -> execution rows, dead letters and
# counts) and the pipeline's loop against fakes of its record source, dead-letter sink and
# execution writer (retry, pause, dead letters, offsets after the durable write). Hermetic.
workflowd_test(batch_planner_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/batch_planner_test.cpp
  LIBS workflowd_pipeline)
workflowd_test(event_pipeline_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/event_pipeline_test.cpp
  LIBS workflowd_pipeline)
