#include "engine/model_files.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/json_nesting.h"
#include "nlohmann/json.hpp"

namespace blockserve::engine {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string JoinPath(const std::string& dir, std::string_view name) {
  return absl::StrCat(dir, "/", std::string(name));
}

bool IsRegularFile(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return text.str();
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    return absl::InternalError(absl::StrCat(path, ": write failed"));
  }
  return absl::OkStatus();
}

// A shard name from the index must name a file directly inside the folder.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// Parses the index into tensor name -> shard file name.
absl::StatusOr<std::map<std::string, std::string>> ReadWeightMap(
    const std::string& index_path) {
  absl::StatusOr<std::string> text = ReadTextFile(index_path);
  if (!text.ok()) return text.status();
  // Before parsing: the error message's dump() of a shard value recurses.
  if (absl::Status s = CheckJsonNesting(*text); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", s.message()));
  }
  Json json = Json::parse(*text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": expected a JSON object"));
  }
  auto weight_map = json.find("weight_map");
  if (weight_map == json.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": expected a \"weight_map\" object"));
  }
  std::map<std::string, std::string> result;
  for (const auto& [tensor, shard] : weight_map->items()) {
    if (!shard.is_string() || !IsPlainFileName(shard.get<std::string>())) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": tensor \"", tensor,
          "\": expected a shard file name in the folder, found ",
          shard.dump()));
    }
    result[tensor] = shard.get<std::string>();
  }
  return result;
}

// DataHash64 constants: odd 64-bit multipliers with well-mixed bits.
constexpr uint64_t kMulA = 0x9e3779b97f4a7c15ull;  // 2^64 / golden ratio
constexpr uint64_t kMulB = 0xd6e8feb86659fd93ull;
constexpr uint64_t kMulC = 0xff51afd7ed558ccdull;
constexpr uint64_t kMulD = 0xc4ceb9fe1a85ec53ull;

uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;  // host is little-endian (checked in dtype.cc)
}

uint64_t Round(uint64_t lane, uint64_t word) {
  return std::rotl(lane + word * kMulB, 29) * kMulA;
}

uint64_t Finalize(uint64_t h) {
  h ^= h >> 33;
  h *= kMulC;
  h ^= h >> 33;
  h *= kMulD;
  h ^= h >> 33;
  return h;
}

class Fnv1a64 {
 public:
  void Bytes(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      hash_ = (hash_ ^ p[i]) * 0x100000001b3ull;
    }
  }
  void String(std::string_view s) {
    Bytes(s.data(), s.size());
    const uint8_t zero = 0;
    Bytes(&zero, 1);
  }
  void U64(uint64_t v) { Bytes(&v, sizeof(v)); }  // little-endian host
  uint64_t hash() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

}  // namespace

// Four independent lanes each absorb every fourth 8-byte little-endian word
// of the 32-byte blocks with lane = rotl(lane + word * B, 29) * A; leftover
// whole words go through lane 0 in order and the final 0-7 bytes form one
// zero-padded word. The lanes are combined with rotations, the length is
// mixed in and a murmur-style finalizer spreads the bits.
uint64_t DataHash64(const uint8_t* data, size_t n) {
  uint64_t lanes[4] = {kMulA, kMulB, kMulC, kMulD};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int lane = 0; lane < 4; ++lane) {
      lanes[lane] = Round(lanes[lane], LoadLE64(data + i + 8 * lane));
    }
  }
  for (; i + 8 <= n; i += 8) lanes[0] = Round(lanes[0], LoadLE64(data + i));
  if (i < n) {
    uint8_t tail[8] = {};
    std::memcpy(tail, data + i, n - i);
    lanes[1] = Round(lanes[1], LoadLE64(tail));
  }
  uint64_t h = std::rotl(lanes[0], 1) + std::rotl(lanes[1], 7) +
               std::rotl(lanes[2], 12) + std::rotl(lanes[3], 18);
  h ^= static_cast<uint64_t>(n) * kMulA;
  return Finalize(h);
}

absl::StatusOr<ModelFiles> ModelFiles::Open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": model folder not found (or not a directory)"));
  }
  ModelFiles files;
  files.dir_ = dir;
  const std::string config_path = JoinPath(dir, kConfigFileName);
  if (!IsRegularFile(config_path)) {
    return absl::NotFoundError(
        absl::StrCat(config_path, ": not found; a model folder needs ",
                     kConfigFileName));
  }
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile(config_path);
  if (!config.ok()) return config.status();
  files.config_ = *std::move(config);

  const std::string index_path = JoinPath(dir, kWeightsIndexFileName);
  absl::Status status;
  if (IsRegularFile(JoinPath(dir, kSingleWeightsFileName))) {
    status = files.OpenSingleFile();
  } else if (IsRegularFile(index_path)) {
    status = files.OpenShards(index_path);
  } else {
    status = absl::NotFoundError(absl::StrCat(
        dir, ": found neither ", kSingleWeightsFileName, " nor ",
        kWeightsIndexFileName));
  }
  if (!status.ok()) return status;
  return files;
}

absl::Status ModelFiles::OpenSingleFile() {
  absl::StatusOr<SafetensorsFile> file =
      SafetensorsFile::Open(JoinPath(dir_, kSingleWeightsFileName));
  if (!file.ok()) return file.status();
  files_.push_back(*std::move(file));
  file_names_.push_back(kSingleWeightsFileName);
  for (const std::string& name : files_[0].TensorNames()) {
    tensors_.emplace(name, Entry{files_[0].Find(name), 0});
  }
  return absl::OkStatus();
}

absl::Status ModelFiles::OpenShards(const std::string& index_path) {
  absl::StatusOr<std::map<std::string, std::string>> weight_map =
      ReadWeightMap(index_path);
  if (!weight_map.ok()) return weight_map.status();
  std::map<std::string, size_t> shard_index;
  for (const auto& [tensor, shard] : *weight_map) {
    if (shard_index.count(shard)) continue;
    const std::string path = JoinPath(dir_, shard);
    if (!IsRegularFile(path)) {
      return absl::NotFoundError(absl::StrCat(
          path, ": shard named in ", kWeightsIndexFileName, " not found"));
    }
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    if (!file.ok()) return file.status();
    shard_index[shard] = files_.size();
    files_.push_back(*std::move(file));
    file_names_.push_back(shard);
  }
  for (const auto& [tensor, shard] : *weight_map) {
    const size_t index = shard_index[shard];
    const TensorView* view = files_[index].Find(tensor);
    if (view == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "tensor \"", tensor, "\": ", kWeightsIndexFileName, " maps it to ",
          shard, ", which does not contain it"));
    }
    tensors_.emplace(tensor, Entry{view, index});
  }
  return absl::OkStatus();
}

bool ModelFiles::Has(std::string_view tensor) const {
  return tensors_.find(tensor) != tensors_.end();
}

std::vector<std::string> ModelFiles::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) names.push_back(name);
  return names;
}

const TensorView* ModelFiles::Find(std::string_view tensor) const {
  auto it = tensors_.find(tensor);
  return it == tensors_.end() ? nullptr : it->second.view;
}

std::string ModelFiles::FileOf(std::string_view tensor) const {
  auto it = tensors_.find(tensor);
  return it == tensors_.end() ? "" : file_names_[it->second.file];
}

absl::StatusOr<std::vector<float>> ModelFiles::LoadF32(
    std::string_view tensor, const std::vector<int64_t>& expected_shape) const {
  auto it = tensors_.find(tensor);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor \"", std::string(tensor),
                                            "\" not found in model folder ",
                                            dir_));
  }
  const TensorView& view = *it->second.view;
  if (view.shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        view.name, " in ", file_names_[it->second.file], ": expected shape ",
        ShapeString(expected_shape), ", found ", ShapeString(view.shape)));
  }
  std::vector<float> values(static_cast<size_t>(view.num_elements()));
  ConvertToF32(view.dtype, view.data, values.size(), values.data());
  return values;
}

uint64_t ModelFiles::ContentHash() const {
  Fnv1a64 hasher;
  for (const auto& [name, entry] : tensors_) {
    const TensorView& view = *entry.view;
    hasher.String(name);
    hasher.String(DTypeName(view.dtype));
    hasher.U64(view.shape.size());
    for (int64_t dim : view.shape) hasher.U64(static_cast<uint64_t>(dim));
    hasher.U64(DataHash64(view.data, view.nbytes));
  }
  return hasher.hash();
}

namespace {

size_t TensorBytes(const TensorToWrite& t) {
  return t.values.size() * DTypeSize(t.dtype);
}

// Splits tensors, in order, into [begin, end) index ranges of at most
// max_bytes each (a larger tensor forms a range alone). Always returns at
// least one range.
std::vector<std::pair<size_t, size_t>> SplitIntoShards(
    const std::vector<TensorToWrite>& tensors, size_t max_bytes) {
  std::vector<std::pair<size_t, size_t>> shards = {{0, 0}};
  size_t current_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const size_t bytes = TensorBytes(tensors[i]);
    const bool current_has_tensors = shards.back().second > shards.back().first;
    if (current_has_tensors && current_bytes + bytes > max_bytes) {
      shards.emplace_back(i, i);
      current_bytes = 0;
    }
    shards.back().second = i + 1;
    current_bytes += bytes;
  }
  return shards;
}

absl::Status RemoveIfPresent(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(path, ": cannot remove: ", ec.message()));
  }
  return absl::OkStatus();
}

const std::map<std::string, std::string>& WeightsMetadata() {
  static const auto* metadata =
      new std::map<std::string, std::string>{{"format", "pt"}};
  return *metadata;
}

absl::Status WriteShardedWeights(const std::string& dir,
                                 const std::vector<TensorToWrite>& tensors,
                                 size_t max_shard_bytes) {
  const std::vector<std::pair<size_t, size_t>> shards =
      SplitIntoShards(tensors, max_shard_bytes);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::map<std::string, std::string> sorted_map;
  uint64_t total_size = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name = absl::StrFormat(
        "model-%05d-of-%05d.safetensors", i + 1, shards.size());
    // One shard's copy of the values at a time.
    const std::vector<TensorToWrite> shard(tensors.begin() + shards[i].first,
                                           tensors.begin() + shards[i].second);
    if (absl::Status s =
            WriteSafetensors(JoinPath(dir, name), shard, WeightsMetadata());
        !s.ok()) {
      return s;
    }
    for (const TensorToWrite& t : shard) {
      sorted_map[t.name] = name;
      total_size += TensorBytes(t);
    }
  }
  for (const auto& [tensor, shard] : sorted_map) weight_map[tensor] = shard;
  nlohmann::ordered_json index = nlohmann::ordered_json::object();
  index["metadata"] = {{"total_size", total_size}};
  index["weight_map"] = std::move(weight_map);
  std::string text;
  try {
    text = index.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode ", kWeightsIndexFileName, ": ", e.what()));
  }
  if (absl::Status s =
          WriteTextFile(JoinPath(dir, kWeightsIndexFileName), text);
      !s.ok()) {
    return s;
  }
  return RemoveIfPresent(JoinPath(dir, kSingleWeightsFileName));
}

}  // namespace

absl::Status WriteModelFolder(const std::string& dir, const ModelConfig& config,
                              const std::vector<TensorToWrite>& tensors,
                              size_t max_shard_bytes) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(dir, ": cannot create folder: ", ec.message()));
  }
  if (absl::Status s =
          WriteTextFile(JoinPath(dir, kConfigFileName), config.ToJson());
      !s.ok()) {
    return s;
  }
  if (max_shard_bytes > 0) {
    return WriteShardedWeights(dir, tensors, max_shard_bytes);
  }
  if (absl::Status s = WriteSafetensors(JoinPath(dir, kSingleWeightsFileName),
                                        tensors, WeightsMetadata());
      !s.ok()) {
    return s;
  }
  return RemoveIfPresent(JoinPath(dir, kWeightsIndexFileName));
}

}  // namespace blockserve::engine
