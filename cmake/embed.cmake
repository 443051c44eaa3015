# Turns a file into a C++ function returning its bytes, so assets ship inside
# the binary. Usage: cmake -DINPUT=... -DOUTPUT=... -DFUNCTION=ns::name -P embed.cmake
file(READ "${INPUT}" content HEX)
string(LENGTH "${content}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${content}")
string(REGEX MATCH "^(.*)::([^:]+)$" _ "${FUNCTION}")
set(namespace "${CMAKE_MATCH_1}")
set(name "${CMAKE_MATCH_2}")
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${INPUT} by cmake/embed.cmake. Do not edit.
#include <string_view>
namespace ${namespace} {
namespace { const char data[] = {${bytes} 0}; }
std::string_view ${name}() { return {data, ${size}}; }
}
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
