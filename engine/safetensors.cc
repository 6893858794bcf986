#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/json_nesting.h"
#include "nlohmann/json.hpp"

namespace blockserve::engine {
namespace {

using Json = nlohmann::json;

// Same limit as the reference implementation: headers above 100 MB are
// rejected rather than parsed.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kLengthPrefixBytes = 8;

absl::Status IoError(const std::string& path, const char* operation) {
  const int err = errno;
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(path, ": ", operation, " failed: ",
                                   std::strerror(err)));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status Invalid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

absl::Status InvalidTensor(const std::string& path, const std::string& name,
                           const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": tensor \"", name, "\": ", what));
}

// Reads a non-negative JSON integer. Returns false for anything else
// (negative, fractional, too large for int64, or not a number).
bool GetNonNegative(const Json& value, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
    return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  }
  if (value.is_number_integer()) {
    const int64_t v = value.get<int64_t>();
    if (v < 0) return false;
    *out = static_cast<uint64_t>(v);
    return true;
  }
  return false;
}

// Parses "shape" and returns the element count, rejecting products that
// overflow `limit`.
absl::Status ParseShape(const std::string& path, const std::string& name,
                        const Json& json, size_t limit,
                        std::vector<int64_t>* shape, uint64_t* num_elements) {
  if (!json.is_array()) {
    return InvalidTensor(path, name,
                         absl::StrCat("expected \"shape\" to be an array, "
                                      "found ", json.type_name()));
  }
  bool has_zero_dim = false;
  for (const Json& dim_json : json) {
    uint64_t dim;
    if (!GetNonNegative(dim_json, &dim)) {
      return InvalidTensor(path, name,
                           absl::StrCat("expected non-negative integer dims in "
                                        "\"shape\", found ", dim_json.dump()));
    }
    has_zero_dim |= dim == 0;
    shape->push_back(static_cast<int64_t>(dim));
  }
  uint64_t count = 1;
  for (int64_t dim : *shape) {
    if (has_zero_dim) {
      count = 0;
      break;
    }
    if (count > limit / static_cast<uint64_t>(dim)) {
      return InvalidTensor(path, name,
                           absl::StrCat("shape ", json.dump(),
                                        " is larger than the file"));
    }
    count *= static_cast<uint64_t>(dim);
  }
  *num_elements = count;
  return absl::OkStatus();
}

absl::Status ParseOffsets(const std::string& path, const std::string& name,
                          const Json& json, uint64_t* begin, uint64_t* end) {
  if (!json.is_array() || json.size() != 2 ||
      !GetNonNegative(json[0], begin) || !GetNonNegative(json[1], end)) {
    return InvalidTensor(path, name,
                         absl::StrCat("expected \"data_offsets\" to be "
                                      "[begin, end] with non-negative "
                                      "integers, found ", json.dump()));
  }
  return absl::OkStatus();
}

const Json* Field(const Json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

absl::Status ParseTensor(const std::string& path, const std::string& name,
                         const Json& entry, const uint8_t* buffer,
                         size_t buffer_size, TensorView* view) {
  if (!entry.is_object()) {
    return InvalidTensor(path, name,
                         absl::StrCat("expected an object, found ",
                                      entry.type_name()));
  }
  const Json* dtype_json = Field(entry, "dtype");
  const Json* shape_json = Field(entry, "shape");
  const Json* offsets_json = Field(entry, "data_offsets");
  if (!dtype_json || !shape_json || !offsets_json) {
    return InvalidTensor(path, name,
                         "expected keys \"dtype\", \"shape\" and "
                         "\"data_offsets\"");
  }
  if (!dtype_json->is_string()) {
    return InvalidTensor(path, name,
                         absl::StrCat("expected \"dtype\" to be a string, "
                                      "found ", dtype_json->type_name()));
  }
  absl::StatusOr<DType> dtype = ParseDType(dtype_json->get<std::string>());
  if (!dtype.ok()) {
    return InvalidTensor(path, name, std::string(dtype.status().message()));
  }
  uint64_t num_elements = 0;
  if (absl::Status s = ParseShape(path, name, *shape_json,
                                  buffer_size + 1, &view->shape,
                                  &num_elements);
      !s.ok()) {
    return s;
  }
  uint64_t begin = 0, end = 0;
  if (absl::Status s = ParseOffsets(path, name, *offsets_json, &begin, &end);
      !s.ok()) {
    return s;
  }
  if (begin > end || end > buffer_size) {
    return InvalidTensor(
        path, name,
        absl::StrCat("expected data_offsets with begin <= end <= ",
                     buffer_size, " (data buffer size), found [", begin, ", ",
                     end, "]"));
  }
  const uint64_t expected_bytes = num_elements * DTypeSize(*dtype);
  if (end - begin != expected_bytes) {
    return InvalidTensor(
        path, name,
        absl::StrCat("shape ", ShapeString(view->shape), " of ",
                     dtype_json->get<std::string>(), " needs ", expected_bytes,
                     " bytes, but data_offsets [", begin, ", ", end,
                     "] span ", end - begin));
  }
  view->name = name;
  view->dtype = *dtype;
  view->data = buffer + begin;
  view->nbytes = static_cast<size_t>(expected_bytes);
  return absl::OkStatus();
}

absl::Status ParseMetadata(const std::string& path, const Json& json,
                           std::map<std::string, std::string>* metadata) {
  if (!json.is_object()) {
    return Invalid(path, absl::StrCat("expected \"__metadata__\" to be an "
                                      "object, found ", json.type_name()));
  }
  for (const auto& [key, value] : json.items()) {
    if (!value.is_string()) {
      return Invalid(path, absl::StrCat("expected \"__metadata__\" value of \"",
                                        key, "\" to be a string, found ",
                                        value.type_name()));
    }
    (*metadata)[key] = value.get<std::string>();
  }
  return absl::OkStatus();
}

// Rejects tensors whose byte ranges intersect (empty tensors never do).
absl::Status CheckNoOverlap(
    const std::string& path,
    const std::map<std::string, TensorView, std::less<>>& tensors) {
  std::vector<const TensorView*> by_offset;
  for (const auto& [name, view] : tensors) {
    if (view.nbytes > 0) by_offset.push_back(&view);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorView* a, const TensorView* b) {
              return a->data < b->data;
            });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorView* prev = by_offset[i - 1];
    if (by_offset[i]->data < prev->data + prev->nbytes) {
      return Invalid(path, absl::StrCat("data of tensors \"", prev->name,
                                        "\" and \"", by_offset[i]->name,
                                        "\" overlap"));
    }
  }
  return absl::OkStatus();
}

// Parses and validates the header of a mapped file of `size` (>= 8) bytes.
absl::Status ParseHeader(
    const std::string& path, const uint8_t* bytes, size_t size,
    std::map<std::string, TensorView, std::less<>>* tensors,
    std::map<std::string, std::string>* metadata) {
  uint64_t header_size;
  std::memcpy(&header_size, bytes, sizeof(header_size));
  if (header_size > kMaxHeaderBytes ||
      header_size > size - kLengthPrefixBytes) {
    return Invalid(path,
                   absl::StrCat("header length ", header_size, " exceeds the ",
                                size - kLengthPrefixBytes,
                                " bytes after the length prefix (limit ",
                                kMaxHeaderBytes, ")"));
  }
  const char* header = reinterpret_cast<const char*>(bytes) +
                       kLengthPrefixBytes;
  // Before parsing: the error messages' dump() of a shape or offsets recurses.
  if (absl::Status s =
          CheckJsonNesting(std::string_view(header, header_size));
      !s.ok()) {
    return Invalid(path, absl::StrCat("header: ", s.message()));
  }
  Json json = Json::parse(header, header + header_size, /*cb=*/nullptr,
                          /*allow_exceptions=*/false);
  if (json.is_discarded()) return Invalid(path, "header is not valid JSON");
  if (!json.is_object()) {
    return Invalid(path, absl::StrCat("expected the header to be a JSON "
                                      "object, found ", json.type_name()));
  }
  const uint8_t* buffer = bytes + kLengthPrefixBytes + header_size;
  const size_t buffer_size = size - kLengthPrefixBytes - header_size;
  for (const auto& [name, entry] : json.items()) {
    if (name == "__metadata__") {
      if (absl::Status s = ParseMetadata(path, entry, metadata); !s.ok()) {
        return s;
      }
      continue;
    }
    TensorView view;
    if (absl::Status s =
            ParseTensor(path, name, entry, buffer, buffer_size, &view);
        !s.ok()) {
      return s;
    }
    tensors->emplace(name, std::move(view));
  }
  return CheckNoOverlap(path, *tensors);
}

}  // namespace

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError(path, "open");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status status = IoError(path, "stat");
    ::close(fd);
    return status;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(path, "expected a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < kLengthPrefixBytes) {
    ::close(fd);
    return Invalid(path, absl::StrCat("expected at least 8 bytes (header "
                                      "length), found ", size));
  }
  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  absl::Status map_status =
      mapping == MAP_FAILED ? IoError(path, "mmap") : absl::OkStatus();
  ::close(fd);
  if (!map_status.ok()) return map_status;

  SafetensorsFile file;
  file.path_ = path;
  file.mapping_ = mapping;
  file.mapping_size_ = size;
  absl::Status status =
      ParseHeader(path, static_cast<const uint8_t*>(mapping), size,
                  &file.tensors_, &file.metadata_);
  if (!status.ok()) return status;
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_size_(std::exchange(other.mapping_size_, 0)),
      tensors_(std::move(other.tensors_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_size_ = std::exchange(other.mapping_size_, 0);
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { Unmap(); }

void SafetensorsFile::Unmap() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
  mapping_ = nullptr;
  mapping_size_ = 0;
}

std::vector<std::string> SafetensorsFile::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) names.push_back(name);
  return names;
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

namespace {

absl::Status CheckTensorsToWrite(const std::string& path,
                                 const std::vector<TensorToWrite>& tensors) {
  std::set<std::string_view> seen;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return Invalid(path, absl::StrCat("invalid tensor name \"", t.name,
                                        "\""));
    }
    if (!seen.insert(t.name).second) {
      return InvalidTensor(path, t.name, "duplicate tensor name");
    }
    uint64_t count = 1;
    for (int64_t dim : t.shape) {
      if (dim < 0) {
        return InvalidTensor(path, t.name,
                             absl::StrCat("negative dim in shape ",
                                          ShapeString(t.shape)));
      }
      count *= static_cast<uint64_t>(dim);
    }
    if (count != t.values.size()) {
      return InvalidTensor(path, t.name,
                           absl::StrCat("shape ", ShapeString(t.shape),
                                        " has ", count, " elements, found ",
                                        t.values.size(), " values"));
    }
  }
  return absl::OkStatus();
}

// Data order: larger element sizes first, then by name, which keeps every
// tensor aligned to its element size.
std::vector<const TensorToWrite*> DataOrder(
    const std::vector<TensorToWrite>& tensors) {
  std::vector<const TensorToWrite*> order;
  for (const TensorToWrite& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) {
              return std::make_tuple(-static_cast<int>(DTypeSize(a->dtype)),
                                     std::string_view(a->name)) <
                     std::make_tuple(-static_cast<int>(DTypeSize(b->dtype)),
                                     std::string_view(b->name));
            });
  return order;
}

// Builds the padded header JSON for tensors laid out in `order`.
absl::StatusOr<std::string> BuildHeader(
    const std::string& path, const std::vector<const TensorToWrite*>& order,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    const uint64_t nbytes = t->values.size() * DTypeSize(t->dtype);
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = std::string(DTypeName(t->dtype));
    entry["shape"] = t->shape;
    entry["data_offsets"] = nlohmann::ordered_json::array({offset,
                                                            offset + nbytes});
    header[t->name] = std::move(entry);
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    return Invalid(path, absl::StrCat("cannot encode header (names and "
                                      "metadata must be UTF-8): ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

absl::Status WriteAll(std::FILE* f, const std::string& path, const void* data,
                      size_t n) {
  if (n == 0 || std::fwrite(data, 1, n, f) == n) return absl::OkStatus();
  return IoError(path, "write");
}

absl::Status WriteFileContents(std::FILE* f, const std::string& path,
                               const std::string& header,
                               const std::vector<const TensorToWrite*>& order) {
  const uint64_t header_size = header.size();
  if (absl::Status s = WriteAll(f, path, &header_size, sizeof(header_size));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteAll(f, path, header.data(), header.size());
      !s.ok()) {
    return s;
  }
  std::vector<uint8_t> bytes;
  for (const TensorToWrite* t : order) {
    bytes.resize(t->values.size() * DTypeSize(t->dtype));
    ConvertFromF32(t->dtype, t->values.data(), t->values.size(), bytes.data());
    if (absl::Status s = WriteAll(f, path, bytes.data(), bytes.size());
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSafetensors(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata) {
  if (absl::Status s = CheckTensorsToWrite(path, tensors); !s.ok()) return s;
  const std::vector<const TensorToWrite*> order = DataOrder(tensors);
  absl::StatusOr<std::string> header = BuildHeader(path, order, metadata);
  if (!header.ok()) return header.status();

  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return IoError(path, "open for writing");
  absl::Status status = WriteFileContents(f, path, *header, order);
  if (std::fclose(f) != 0 && status.ok()) status = IoError(path, "close");
  return status;
}

}  // namespace blockserve::engine
