// Reading and writing the safetensors weight format.
//
// Layout of a safetensors file:
//   bytes [0, 8)      N, the header length, as a little-endian u64;
//   bytes [8, 8+N)    a JSON object (UTF-8), possibly padded with trailing
//                     spaces:
//                       {"__metadata__": {"key": "value", ...},  (optional)
//                        "tensor.name": {"dtype": "F32", "shape": [2, 3],
//                                        "data_offsets": [begin, end]}, ...}
//   bytes [8+N, EOF)  the data buffer; each tensor occupies
//                     [begin, end) relative to the start of the buffer,
//                     stored row-major and little-endian.
//
// Only F32, F16 and BF16 tensors are supported (see engine/dtype.h).

#ifndef BLOCKSERVE_ENGINE_SAFETENSORS_H_
#define BLOCKSERVE_ENGINE_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/dtype.h"

namespace blockserve::engine {

// A tensor inside a mapped safetensors file. `data` points into the mapping
// (valid while the owning SafetensorsFile lives; not necessarily aligned) and
// holds exactly `nbytes` = num_elements() * DTypeSize(dtype) bytes.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // empty for a scalar
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  // Product of `shape` (1 for a scalar).
  int64_t num_elements() const;
};

// A read-only safetensors file, memory-mapped for its whole lifetime.
// Move-only; pointers returned by Find() stay valid across moves and until
// the object holding the mapping is destroyed.
class SafetensorsFile {
 public:
  // Maps `path` and validates the whole header: header length within the
  // file, JSON object, known keys with the right types, supported dtypes,
  // non-negative dims, offsets inside the data buffer that match
  // shape x dtype size and do not overlap. Returns NotFound if the file
  // cannot be opened and InvalidArgument (message naming the file and, where
  // relevant, the tensor) for any malformed content. Never crashes on
  // arbitrary bytes.
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // Names of all tensors, sorted.
  std::vector<std::string> TensorNames() const;

  // The tensor called `name`, or nullptr if the file has none.
  const TensorView* Find(std::string_view name) const;

  // The "__metadata__" entries (empty if the header has none).
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }

  // The path given to Open().
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  void Unmap();

  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: `values` (row-major, num_elements of `shape` of them)
// are converted to `dtype` (round to nearest even) on write.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// Writes a safetensors file at `path` (replacing any existing file). Tensor
// data is laid out by decreasing element size, then by name, so every tensor
// is aligned to its element size; the header JSON is compact, lists
// "__metadata__" first (only when non-empty) and is padded with spaces to a
// multiple of 8 bytes. Returns InvalidArgument for an empty, duplicate or
// reserved ("__metadata__") name, a negative dim, or a values count that
// does not match the shape, and an I/O error status if writing fails.
absl::Status WriteSafetensors(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata = {});

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_SAFETENSORS_H_
