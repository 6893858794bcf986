// GGUF v3 writer: the single-file model format llama.cpp loads. bench/peer converts the
// engine's Hugging Face folders to it (hf_to_gguf.h) so llama.cpp runs the same weights.
//
// Layout (all integers little-endian):
//   "GGUF" (4 bytes), version u32 = 3, tensor count u64, metadata key/value count u64;
//   each key/value: key string, value type u32, value;
//   each tensor info: name string, n_dims u32, ne[0..n_dims) u64 (ne0 innermost, i.e. a
//     row-major [rows, cols] matrix is ne = {cols, rows}), ggml type u32, data offset u64
//     (relative to the data section, a multiple of the alignment);
//   zero padding up to a multiple of the alignment, then the data section, each tensor's
//   bytes at its offset, zero-padded between tensors.
// A string is a u64 byte length and the bytes (no terminator); an array is the element
// type u32, a u64 count and the elements. The alignment is general.alignment (default 32;
// this writer always writes the key).
#ifndef BLOCKSERVE_BENCH_PEER_GGUF_WRITER_H_
#define BLOCKSERVE_BENCH_PEER_GGUF_WRITER_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace blockserve::bench {

// GGUF metadata value types (the numbers are the file's).
enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

// ggml tensor types this writer produces (the numbers are ggml's).
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1 };

inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint64_t kGgufAlignment = 32;

class GgufWriter {
 public:
  // Metadata, written in the order added. A key added twice is an error at Write().
  void AddUint32(const std::string& key, uint32_t value);
  void AddInt32(const std::string& key, int32_t value);
  void AddFloat32(const std::string& key, float value);
  void AddBool(const std::string& key, bool value);
  void AddString(const std::string& key, const std::string& value);
  void AddStringArray(const std::string& key, const std::vector<std::string>& values);
  void AddInt32Array(const std::string& key, const std::vector<int32_t>& values);

  // A tensor of `ne` (GGUF order, ne[0] innermost) stored as `type`; `values` are fp32 in
  // memory order (ne[0] fastest) and are rounded to nearest even for F16. Errors
  // (InvalidArgument) at Write(): an empty or duplicate name, a name over 63 bytes (ggml's
  // limit), no dims or more than 4, a dim < 1, a count that does not match ne.
  void AddTensor(const std::string& name, const std::vector<int64_t>& ne, GgmlType type,
                 std::vector<float> values);

  // The whole file. Status errors as above; an I/O error if the stream fails.
  absl::Status Write(std::ostream& out) const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct KeyValue {
    std::string key;
    GgufValueType type;
    std::string encoded;  // the value's bytes as the file holds them (after the type)
  };
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    GgmlType type;
    std::vector<float> values;
  };
  absl::Status Validate() const;

  std::vector<KeyValue> metadata_;
  std::vector<Tensor> tensors_;
};

// Bytes per element of a writable type.
size_t GgmlTypeSize(GgmlType type);

// Hugging Face's Llama keeps each head's rotary pairs as (i, i + head_dim/2) ("rotate
// half"); llama.cpp's LLAMA architecture rotates adjacent pairs (2i, 2i + 1). Converting
// q_proj / k_proj therefore reorders the rows of each head: output row h*D + 2i + j is
// input row h*D + j*D/2 + i (D = head_dim, i < D/2, j in {0, 1}), so that llama.cpp's
// rotation of the new rows equals HF's rotation of the old ones. `w` is row-major
// [heads * D, cols]; D must be even.
std::vector<float> PermuteRowsForGgmlRope(const std::vector<float>& w, int64_t heads,
                                          int64_t cols);

}  // namespace blockserve::bench

#endif  // BLOCKSERVE_BENCH_PEER_GGUF_WRITER_H_
