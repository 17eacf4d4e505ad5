# Temporal's gRPC API (WorkflowService) generated at build time from Temporal's own .proto files.
#
# The .proto files come from a pinned package of a registry (scripts/install-deps.sh extracts them
# into .cache/temporal/protos-<version>/); they are not committed. Only the import closure of the
# files workflowd uses is copied into the build tree and compiled, with two fixes made to the copy
# (never to the source):
#   - the packages temporal.api.namespace.v1 / temporal.api.export.v1 become namespace_ / export_:
#     protoc 3.21 escapes C++ keywords in field names but not in package names, and
#     `namespace namespace {` does not compile. Package names are not on the wire (only Any type
#     URLs and reflection full names would change, and workflowd packs none of those types).
#   - `linux` (a field of temporal.api.worker.v1) is a GCC macro in GNU mode: the project builds
#     with CMAKE_CXX_EXTENSIONS OFF, and the library adds -Ulinux to its users as a guard.
# The vendored google/protobuf/*.proto of the package are skipped: the well-known types come from
# the system's libprotobuf, whose runtime they must match.

set(WORKFLOWD_TEMPORAL_PROTO_DIR "${CMAKE_SOURCE_DIR}/.cache/temporal/protos-1.35.0"
    CACHE PATH "Temporal's API .proto files (api_upstream/ and google/rpc/), from scripts/install-deps.sh")

set(_tp_upstream "${WORKFLOWD_TEMPORAL_PROTO_DIR}/api_upstream")
if(NOT EXISTS "${_tp_upstream}/temporal/api/workflowservice/v1/service.proto"
   OR NOT EXISTS "${WORKFLOWD_TEMPORAL_PROTO_DIR}/google/rpc/status.proto")
  message(FATAL_ERROR
    "Temporal's API .proto files are missing from ${WORKFLOWD_TEMPORAL_PROTO_DIR}: run "
    "scripts/install-deps.sh (step \"temporal\"), or point -DWORKFLOWD_TEMPORAL_PROTO_DIR= at a "
    "folder holding api_upstream/temporal/api/... and google/rpc/status.proto")
endif()

find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)

# Where an imported file is found: Temporal's upstream tree, or the package's google/rpc.
function(_tp_locate rel out)
  if(EXISTS "${_tp_upstream}/${rel}")
    set(${out} "${_tp_upstream}/${rel}" PARENT_SCOPE)
  elseif(EXISTS "${WORKFLOWD_TEMPORAL_PROTO_DIR}/${rel}")
    set(${out} "${WORKFLOWD_TEMPORAL_PROTO_DIR}/${rel}" PARENT_SCOPE)
  else()
    message(FATAL_ERROR "Temporal API: imported file ${rel} not found under ${WORKFLOWD_TEMPORAL_PROTO_DIR}")
  endif()
endfunction()

# The import closure of the roots, following `import "...";` lines.
set(_tp_pending
  temporal/api/workflowservice/v1/service.proto
  temporal/api/errordetails/v1/message.proto
  google/rpc/status.proto)
set(_tp_closure)
while(_tp_pending)
  list(POP_FRONT _tp_pending _tp_rel)
  if(_tp_rel IN_LIST _tp_closure OR _tp_rel MATCHES "^google/protobuf/")
    continue()
  endif()
  list(APPEND _tp_closure "${_tp_rel}")
  _tp_locate("${_tp_rel}" _tp_src)
  file(STRINGS "${_tp_src}" _tp_imports REGEX "^import +\"[^\"]+\";")
  foreach(_tp_line IN LISTS _tp_imports)
    string(REGEX REPLACE "^import +\"([^\"]+)\";.*" "\\1" _tp_import "${_tp_line}")
    list(APPEND _tp_pending "${_tp_import}")
  endforeach()
endwhile()

set(_tp_copy "${CMAKE_BINARY_DIR}/temporal_api/proto")
set(_tp_gen "${CMAKE_BINARY_DIR}/temporal_api/gen")
file(MAKE_DIRECTORY "${_tp_gen}")
set(_tp_copies)
set(_tp_sources)
foreach(_tp_rel IN LISTS _tp_closure)
  _tp_locate("${_tp_rel}" _tp_src)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_tp_src}")
  file(READ "${_tp_src}" _tp_text)
  string(REGEX REPLACE "temporal\\.api\\.(namespace|export)\\.v1([^A-Za-z0-9_])"
         "temporal.api.\\1_.v1\\2" _tp_text "${_tp_text}")
  # Copied on only when different, so an unchanged file triggers no rebuild.
  file(WRITE "${_tp_copy}.tmp/${_tp_rel}" "${_tp_text}")
  configure_file("${_tp_copy}.tmp/${_tp_rel}" "${_tp_copy}/${_tp_rel}" COPYONLY)
  list(APPEND _tp_copies "${_tp_copy}/${_tp_rel}")
  string(REGEX REPLACE "\\.proto$" "" _tp_stem "${_tp_rel}")
  list(APPEND _tp_sources "${_tp_gen}/${_tp_stem}.pb.cc" "${_tp_gen}/${_tp_stem}.pb.h")
endforeach()
list(APPEND _tp_sources
  "${_tp_gen}/temporal/api/workflowservice/v1/service.grpc.pb.cc"
  "${_tp_gen}/temporal/api/workflowservice/v1/service.grpc.pb.h")

# code_size: reflection-based serialization, half the generated code of the default; negligible
# next to an RPC. The system's include dir comes first so the well-known types are the runtime's.
add_custom_command(
  OUTPUT ${_tp_sources}
  COMMAND protobuf::protoc -I "${Protobuf_INCLUDE_DIR}" -I "${_tp_copy}"
          "--cpp_out=code_size:${_tp_gen}" ${_tp_closure}
  COMMAND protobuf::protoc -I "${Protobuf_INCLUDE_DIR}" -I "${_tp_copy}"
          "--grpc_out=${_tp_gen}" "--plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>"
          temporal/api/workflowservice/v1/service.proto
  DEPENDS ${_tp_copies}
  COMMENT "Generating Temporal's API (${WORKFLOWD_TEMPORAL_PROTO_DIR})"
  VERBATIM)

add_library(workflowd_temporal_api STATIC ${_tp_sources})
target_include_directories(workflowd_temporal_api SYSTEM PUBLIC "${_tp_gen}")
target_link_libraries(workflowd_temporal_api PUBLIC protobuf::libprotobuf gRPC::grpc++)
# Generated code: no warnings of ours, no debug info (it is large and never stepped through),
# -O1 (it compiles much faster; code_size code spends its time in the reflection runtime anyway).
target_compile_options(workflowd_temporal_api PRIVATE -w -g0 -O1 PUBLIC -Ulinux)
set_target_properties(workflowd_temporal_api PROPERTIES CXX_CLANG_TIDY "")
