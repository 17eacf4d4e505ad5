# Envelope decoding (consumers/).
workflowd_test(envelope_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/envelope_test.cpp
  LIBS workflowd_consumers)
target_compile_definitions(envelope_test PRIVATE
  WORKFLOWD_ENVELOPES_TESTDATA="${CMAKE_CURRENT_SOURCE_DIR}/testdata/envelopes")
