#include "bench/peer/gguf_writer.h"

#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/dtype.h"

namespace blockserve::bench {
namespace {

// Little-endian by shifts, so the file is the same whatever the host's byte order.
template <typename T>
void PutLe(std::string* out, T value) {
  uint64_t bits = 0;
  static_assert(sizeof(T) <= sizeof(bits));
  std::memcpy(&bits, &value, sizeof(T));
  for (size_t i = 0; i < sizeof(T); ++i) out->push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

void PutString(std::string* out, const std::string& s) {
  PutLe<uint64_t>(out, s.size());
  out->append(s);
}

uint64_t AlignUp(uint64_t n) { return (n + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment; }

int64_t Elements(const std::vector<int64_t>& ne) {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

}  // namespace

size_t GgmlTypeSize(GgmlType type) { return type == GgmlType::kF32 ? 4 : 2; }

void GgufWriter::AddUint32(const std::string& key, uint32_t value) {
  std::string e;
  PutLe(&e, value);
  metadata_.push_back({key, GgufValueType::kUint32, std::move(e)});
}

void GgufWriter::AddInt32(const std::string& key, int32_t value) {
  std::string e;
  PutLe(&e, value);
  metadata_.push_back({key, GgufValueType::kInt32, std::move(e)});
}

void GgufWriter::AddFloat32(const std::string& key, float value) {
  std::string e;
  PutLe(&e, value);
  metadata_.push_back({key, GgufValueType::kFloat32, std::move(e)});
}

void GgufWriter::AddBool(const std::string& key, bool value) {
  metadata_.push_back({key, GgufValueType::kBool, std::string(1, value ? 1 : 0)});
}

void GgufWriter::AddString(const std::string& key, const std::string& value) {
  std::string e;
  PutString(&e, value);
  metadata_.push_back({key, GgufValueType::kString, std::move(e)});
}

void GgufWriter::AddStringArray(const std::string& key, const std::vector<std::string>& values) {
  std::string e;
  PutLe(&e, static_cast<uint32_t>(GgufValueType::kString));
  PutLe<uint64_t>(&e, values.size());
  for (const std::string& v : values) PutString(&e, v);
  metadata_.push_back({key, GgufValueType::kArray, std::move(e)});
}

void GgufWriter::AddInt32Array(const std::string& key, const std::vector<int32_t>& values) {
  std::string e;
  PutLe(&e, static_cast<uint32_t>(GgufValueType::kInt32));
  PutLe<uint64_t>(&e, values.size());
  for (int32_t v : values) PutLe(&e, v);
  metadata_.push_back({key, GgufValueType::kArray, std::move(e)});
}

void GgufWriter::AddTensor(const std::string& name, const std::vector<int64_t>& ne, GgmlType type,
                           std::vector<float> values) {
  tensors_.push_back({name, ne, type, std::move(values)});
}

absl::Status GgufWriter::Validate() const {
  std::set<std::string> keys, names;
  for (const KeyValue& kv : metadata_) {
    if (kv.key.empty()) return absl::InvalidArgumentError("GGUF: empty metadata key");
    if (!keys.insert(kv.key).second) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: metadata key ", kv.key, " added twice"));
    }
  }
  for (const Tensor& t : tensors_) {
    if (t.name.empty()) return absl::InvalidArgumentError("GGUF: empty tensor name");
    // ggml keeps names in a 64-byte buffer with its terminator.
    if (t.name.size() > 63) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor name over 63 bytes: ", t.name));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor ", t.name, " added twice"));
    }
    if (t.ne.empty() || t.ne.size() > 4) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF: tensor ", t.name, " has ", t.ne.size(), " dims (1 to 4 allowed)"));
    }
    for (int64_t d : t.ne) {
      if (d < 1) return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor ", t.name, " has a dim ", d));
    }
    if (Elements(t.ne) != static_cast<int64_t>(t.values.size())) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor ", t.name, " has ", t.values.size(),
                                                     " values for ", Elements(t.ne), " elements"));
    }
  }
  return absl::OkStatus();
}

absl::Status GgufWriter::Write(std::ostream& out) const {
  if (absl::Status s = Validate(); !s.ok()) return s;
  std::string head = "GGUF";
  PutLe(&head, kGgufVersion);
  PutLe<uint64_t>(&head, tensors_.size());
  PutLe<uint64_t>(&head, metadata_.size() + 1);  // + general.alignment
  {
    PutString(&head, "general.alignment");
    PutLe(&head, static_cast<uint32_t>(GgufValueType::kUint32));
    PutLe(&head, static_cast<uint32_t>(kGgufAlignment));
  }
  for (const KeyValue& kv : metadata_) {
    PutString(&head, kv.key);
    PutLe(&head, static_cast<uint32_t>(kv.type));
    head.append(kv.encoded);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    PutString(&head, t.name);
    PutLe<uint32_t>(&head, t.ne.size());
    for (int64_t d : t.ne) PutLe<uint64_t>(&head, d);
    PutLe(&head, static_cast<uint32_t>(t.type));
    PutLe<uint64_t>(&head, offset);
    offset = AlignUp(offset + t.values.size() * GgmlTypeSize(t.type));
  }
  head.resize(AlignUp(head.size()), '\0');
  out.write(head.data(), head.size());
  std::string data;
  for (const Tensor& t : tensors_) {
    data.clear();
    data.resize(AlignUp(t.values.size() * GgmlTypeSize(t.type)), '\0');
    engine::ConvertFromF32(t.type == GgmlType::kF32 ? engine::DType::kF32 : engine::DType::kF16,
                           t.values.data(), t.values.size(), data.data());
    out.write(data.data(), data.size());
  }
  if (!out) return absl::DataLossError("GGUF: write failed");
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::NotFoundError(absl::StrCat("cannot create ", path));
  if (absl::Status s = Write(out); !s.ok()) return s;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

std::vector<float> PermuteRowsForGgmlRope(const std::vector<float>& w, int64_t heads,
                                          int64_t cols) {
  const int64_t rows = static_cast<int64_t>(w.size()) / cols, d = rows / heads, half = d / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const float* src = &w[(h * d + j * half + i) * cols];
        std::copy(src, src + cols, &out[(h * d + 2 * i + j) * cols]);
      }
    }
  }
  return out;
}

}  // namespace blockserve::bench
