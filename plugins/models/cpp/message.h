// Error messages handed from the C++ entry points to Rust: a malloc'd copy
// of the text, which Rust takes over and frees with inferd_free_message
// (defined in int8_linear.cpp; see core::int8::take_message).

#pragma once

#include <cstdlib>
#include <cstring>

namespace inferd {

// A malloc'd copy of `text`, or null if memory ran out.
inline char* copy_message(const char* text) {
  char* out = static_cast<char*>(std::malloc(std::strlen(text) + 1));
  if (out != nullptr) std::strcpy(out, text);
  return out;
}

}  // namespace inferd
