// The wire codec of the records ranks exchange (candidates, record groups):
// fields one after another with no padding, fixed-size ones in the host's
// byte order (every rank of a job runs the same binary on the same kind of
// machine), variable-length ones as raw bytes whose count an earlier field
// gives. One encoder and one decoder, so that a record layout is written once,
// as a sequence of put()s, and read back by the same sequence of get()s.
#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <vector>

namespace metareuse::patterns_detail {

// Appends records to a byte buffer.
class WireWriter {
 public:
  explicit WireWriter(std::vector<char>& out) : out_(out) {}

  template <typename T>
  void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>, "wire fields are copied as bytes");
    put_bytes(&value, sizeof(T));
  }
  // values[0, count), without the count (an earlier field carries it).
  template <typename T>
  void put_array(const T* values, std::size_t count) {
    static_assert(std::is_trivially_copyable_v<T>, "wire fields are copied as bytes");
    put_bytes(values, count * sizeof(T));
  }
  void put_bytes(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const char*>(data);
    out_.insert(out_.end(), bytes, bytes + size);
  }

 private:
  std::vector<char>& out_;
};

// Reads records back from bytes a WireWriter wrote (at any alignment).
class WireReader {
 public:
  explicit WireReader(std::string_view bytes) : position_(bytes.data()), end_(bytes.data() + bytes.size()) {}

  bool done() const { return position_ >= end_; }

  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>, "wire fields are copied as bytes");
    T value;
    std::memcpy(&value, position_, sizeof(T));
    position_ += sizeof(T);
    return value;
  }
  template <typename T>
  void get_array(T* values, std::size_t count) {
    static_assert(std::is_trivially_copyable_v<T>, "wire fields are copied as bytes");
    std::memcpy(values, position_, count * sizeof(T));
    position_ += count * sizeof(T);
  }
  // The next `size` bytes, in place: the view lives as long as the buffer.
  std::string_view get_bytes(std::size_t size) {
    std::string_view bytes(position_, size);
    position_ += size;
    return bytes;
  }

 private:
  const char* position_;
  const char* end_;
};

}  // namespace metareuse::patterns_detail
