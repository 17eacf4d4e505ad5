# Condition language (matching/) and workflow definitions (definitions/).
workflowd_test(condition_test unit
  SOURCES condition_test.cpp
  LIBS workflowd_matching)

workflowd_test(definition_test unit
  SOURCES definition_test.cpp definition_loader_test.cpp
  LIBS workflowd_definitions)
target_compile_definitions(definition_test PRIVATE
  WORKFLOWD_DEFINITIONS_TESTDATA="${CMAKE_CURRENT_SOURCE_DIR}/testdata/definitions")

# Building the matching index from stored definitions (matching::BuildIndex).
workflowd_test(index_build_test unit
  SOURCES index_build_test.cpp
  LIBS workflowd_matching)
