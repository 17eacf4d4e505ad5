# Fitting dead letters to the producer's limit (consumers/).
workflowd_test(dead_letter_fit_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/dead_letter_fit_test.cpp
  LIBS workflowd_consumers)
