// A Hugging Face model folder: config.json plus weights in safetensors
// format, either a single model.safetensors or shards listed by
// model.safetensors.index.json
//   {"metadata": {...}, "weight_map": {"tensor.name": "shard file name"}}.

#ifndef BLOCKSERVE_ENGINE_MODEL_FILES_H_
#define BLOCKSERVE_ENGINE_MODEL_FILES_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"

namespace blockserve::engine {

inline constexpr char kConfigFileName[] = "config.json";
inline constexpr char kSingleWeightsFileName[] = "model.safetensors";
inline constexpr char kWeightsIndexFileName[] = "model.safetensors.index.json";

// An opened model folder. All weight files stay memory-mapped while the
// object lives. Move-only (the shards are move-only).
class ModelFiles {
 public:
  // Reads and validates `dir`/config.json, then opens the weights: if
  // model.safetensors exists it holds every tensor; otherwise
  // model.safetensors.index.json is read, every shard it names is opened and
  // every weight_map entry is checked to exist in its shard (tensors a shard
  // holds but the index does not list are not exposed). Errors: NotFound for
  // a missing folder, config.json, weights file, shard or indexed tensor
  // (naming it); InvalidArgument for malformed files.
  static absl::StatusOr<ModelFiles> Open(const std::string& dir);

  ModelFiles(ModelFiles&&) = default;
  ModelFiles& operator=(ModelFiles&&) = default;
  ModelFiles(const ModelFiles&) = delete;
  ModelFiles& operator=(const ModelFiles&) = delete;

  const ModelConfig& config() const { return config_; }

  // The folder given to Open().
  std::string dir() const { return dir_; }

  bool Has(std::string_view tensor) const;

  // All tensor names, sorted.
  std::vector<std::string> TensorNames() const;

  // The mapped tensor, or nullptr if absent. Valid while *this lives.
  const TensorView* Find(std::string_view tensor) const;

  // The weight file (name within dir()) that holds `tensor`, or "" if absent.
  std::string FileOf(std::string_view tensor) const;

  // Returns the tensor converted to fp32 (row-major) after checking that its
  // shape equals `expected_shape`. NotFound naming the tensor and folder if
  // absent; InvalidArgument on a shape mismatch, e.g.
  // "model.layers.0.self_attn.q_proj.weight in
  //  model-00001-of-00002.safetensors: expected shape [64, 64], found
  //  [64, 32]".
  absl::StatusOr<std::vector<float>> LoadF32(
      std::string_view tensor,
      const std::vector<int64_t>& expected_shape) const;

  // A 64-bit fingerprint of the weights, independent of how they are split
  // into files and of config.json. It is FNV-1a 64 over, for each tensor in
  // name order: the name, a 0 byte, the dtype name, a 0 byte, the rank and
  // each dim as u64 little-endian, and DataHash64 of the tensor's raw bytes
  // as u64 little-endian. DataHash64 is BlockServe's own non-cryptographic
  // 4-lane multiply-rotate hash (see model_files.cc). Reads every weight
  // byte, so it costs one pass over the files.
  uint64_t ContentHash() const;

 private:
  struct Entry {
    const TensorView* view;
    size_t file;  // index into files_ / file_names_
  };

  ModelFiles() = default;
  absl::Status OpenSingleFile();
  absl::Status OpenShards(const std::string& index_path);

  std::string dir_;
  ModelConfig config_;
  std::vector<SafetensorsFile> files_;
  std::vector<std::string> file_names_;
  std::map<std::string, Entry, std::less<>> tensors_;
};

// The hash ModelFiles::ContentHash applies to each tensor's bytes.
uint64_t DataHash64(const uint8_t* data, size_t n);

// Writes a model folder (creating `dir` if needed): config.json (after
// config.Validate()) and the weights, as model.safetensors when
// max_shard_bytes == 0, else as model-0000i-of-0000N.safetensors shards of
// at most max_shard_bytes tensor bytes each (a larger tensor gets a shard of
// its own; tensors keep their order) plus model.safetensors.index.json with
// "total_size" metadata. Weight files carry {"format": "pt"} metadata. A
// stale entry file of the other layout (model.safetensors or the index) is
// removed so that Open() sees the new weights.
absl::Status WriteModelFolder(const std::string& dir, const ModelConfig& config,
                              const std::vector<TensorToWrite>& tensors,
                              size_t max_shard_bytes = 0);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_MODEL_FILES_H_
