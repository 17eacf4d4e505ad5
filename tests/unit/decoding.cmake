# Event decoding (decoding/): every format, every dead-letter reason, the DLQ headers.
workflowd_test(decoding_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/decoding_test.cpp
  LIBS workflowd_decoding)
target_compile_definitions(decoding_test PRIVATE
  WORKFLOWD_ENVELOPES_TESTDATA="${CMAKE_CURRENT_SOURCE_DIR}/testdata/envelopes")
