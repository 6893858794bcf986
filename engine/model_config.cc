#include "engine/model_config.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/json_nesting.h"
#include "nlohmann/json.hpp"

namespace blockserve::engine {
namespace {

using Json = nlohmann::json;

absl::Status KeyError(const char* key, const char* expected,
                      const Json& found) {
  return absl::InvalidArgumentError(absl::StrCat(
      "key \"", key, "\": expected ", expected, ", found ", found.dump()));
}

// Typed access to the keys of a JSON object. A key whose value is null
// counts as missing. Getters leave `*out` unchanged when the key is missing
// and not required.
class KeyReader {
 public:
  explicit KeyReader(const Json& object) : object_(object) {}

  const Json* Find(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::Status Int(const char* key, bool required, int64_t* out) const {
    const Json* value = Find(key);
    if (value == nullptr) return Missing(key, required);
    return ToInt(key, *value, out);
  }

  absl::Status Double(const char* key, double* out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_number()) return KeyError(key, "a number", *value);
    *out = value->get<double>();
    return absl::OkStatus();
  }

  absl::Status Bool(const char* key, bool* out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_boolean()) return KeyError(key, "true or false", *value);
    *out = value->get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* key, bool required, std::string* out) const {
    const Json* value = Find(key);
    if (value == nullptr) return Missing(key, required);
    if (!value->is_string()) return KeyError(key, "a string", *value);
    *out = value->get<std::string>();
    return absl::OkStatus();
  }

  // Accepts integers and integral floating-point numbers that fit int64.
  static absl::Status ToInt(const char* key, const Json& value, int64_t* out) {
    if (value.is_number_unsigned()) {
      if (value.get<uint64_t>() >
          static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return KeyError(key, "an integer that fits in int64", value);
      }
      *out = static_cast<int64_t>(value.get<uint64_t>());
      return absl::OkStatus();
    }
    if (value.is_number_integer()) {
      *out = value.get<int64_t>();
      return absl::OkStatus();
    }
    if (value.is_number_float()) {
      const double d = value.get<double>();
      if (d == std::trunc(d) && std::fabs(d) < 0x1p62) {
        *out = static_cast<int64_t>(d);
        return absl::OkStatus();
      }
    }
    return KeyError(key, "an integer", value);
  }

 private:
  static absl::Status Missing(const char* key, bool required) {
    if (!required) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("missing required key \"", key, "\""));
  }

  const Json& object_;
};

// Local to this file; undefined at its end.
#define CONFIG_RETURN_IF_ERROR(expr)          \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)

absl::Status Positive(const char* field, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected a positive value, found ", value));
}

absl::Status ValidateLayerCount(int64_t num_layers) {
  CONFIG_RETURN_IF_ERROR(Positive("num_hidden_layers", num_layers));
  if (num_layers <= ModelConfig::kMaxHiddenLayers) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "num_hidden_layers: expected at most ", ModelConfig::kMaxHiddenLayers,
      ", found ", num_layers));
}

absl::Status ParseRopeScaling(const Json& json, RopeScaling* out) {
  if (!json.is_object()) {
    return KeyError("rope_scaling", "an object or null", json);
  }
  KeyReader reader(json);
  std::string type;
  if (reader.Find("rope_type") != nullptr) {
    CONFIG_RETURN_IF_ERROR(reader.String("rope_type", true, &type));
  } else {
    CONFIG_RETURN_IF_ERROR(reader.String("type", false, &type));
  }
  RopeScaling scaling;
  if (type.empty()) {
    return absl::InvalidArgumentError(
        "rope_scaling: missing required key \"rope_type\" (or \"type\")");
  }
  if (type == "default") {
    *out = scaling;
    return absl::OkStatus();
  }
  if (type == "linear") {
    scaling.type = RopeScalingType::kLinear;
  } else if (type == "llama3") {
    scaling.type = RopeScalingType::kLlama3;
    CONFIG_RETURN_IF_ERROR(
        reader.Double("low_freq_factor", &scaling.low_freq_factor));
    CONFIG_RETURN_IF_ERROR(
        reader.Double("high_freq_factor", &scaling.high_freq_factor));
    CONFIG_RETURN_IF_ERROR(
        reader.Int("original_max_position_embeddings", false,
                   &scaling.original_max_position_embeddings));
  } else {
    return absl::UnimplementedError(absl::StrCat(
        "rope_scaling type \"", type,
        "\" is not supported (supported: default, linear, llama3)"));
  }
  if (reader.Find("factor") == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rope_scaling of type \"", type, "\": missing required key "
        "\"factor\""));
  }
  CONFIG_RETURN_IF_ERROR(reader.Double("factor", &scaling.factor));
  *out = scaling;
  return absl::OkStatus();
}

absl::Status ParseTokenIds(const KeyReader& reader, ModelConfig* config) {
  int64_t bos = 0;
  if (reader.Find("bos_token_id") != nullptr) {
    CONFIG_RETURN_IF_ERROR(reader.Int("bos_token_id", true, &bos));
    config->bos_token_id = bos;
  }
  const Json* eos = reader.Find("eos_token_id");
  if (eos == nullptr) return absl::OkStatus();
  if (!eos->is_array()) {
    int64_t id = 0;
    CONFIG_RETURN_IF_ERROR(KeyReader::ToInt("eos_token_id", *eos, &id));
    config->eos_token_ids.push_back(id);
    return absl::OkStatus();
  }
  for (const Json& item : *eos) {
    int64_t id = 0;
    CONFIG_RETURN_IF_ERROR(KeyReader::ToInt("eos_token_id", item, &id));
    config->eos_token_ids.push_back(id);
  }
  return absl::OkStatus();
}

absl::Status ParseSizes(const KeyReader& reader, ModelConfig* config) {
  CONFIG_RETURN_IF_ERROR(reader.Int("vocab_size", true, &config->vocab_size));
  CONFIG_RETURN_IF_ERROR(
      reader.Int("hidden_size", true, &config->hidden_size));
  CONFIG_RETURN_IF_ERROR(
      reader.Int("intermediate_size", true, &config->intermediate_size));
  CONFIG_RETURN_IF_ERROR(
      reader.Int("num_hidden_layers", true, &config->num_hidden_layers));
  CONFIG_RETURN_IF_ERROR(ValidateLayerCount(config->num_hidden_layers));
  CONFIG_RETURN_IF_ERROR(
      reader.Int("num_attention_heads", true, &config->num_attention_heads));
  config->num_key_value_heads = config->num_attention_heads;
  CONFIG_RETURN_IF_ERROR(
      reader.Int("num_key_value_heads", false, &config->num_key_value_heads));
  CONFIG_RETURN_IF_ERROR(reader.Int("max_position_embeddings", false,
                                        &config->max_position_embeddings));
  if (reader.Find("head_dim") != nullptr) {
    return reader.Int("head_dim", true, &config->head_dim);
  }
  if (config->num_attention_heads > 0) {
    if (config->hidden_size % config->num_attention_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hidden_size ", config->hidden_size,
          " is not divisible by num_attention_heads ",
          config->num_attention_heads, " and no head_dim is given"));
    }
    config->head_dim = config->hidden_size / config->num_attention_heads;
  }
  return absl::OkStatus();
}

absl::Status ParseRope(const KeyReader& reader, ModelConfig* config) {
  CONFIG_RETURN_IF_ERROR(reader.Double("rope_theta", &config->rope_theta));
  // Newer transformers versions write "rope_parameters" instead of
  // "rope_scaling", with rope_theta inside it.
  const Json* rope = reader.Find("rope_scaling");
  if (rope == nullptr) rope = reader.Find("rope_parameters");
  if (rope == nullptr) return absl::OkStatus();
  if (rope->is_object() && reader.Find("rope_theta") == nullptr) {
    CONFIG_RETURN_IF_ERROR(
        KeyReader(*rope).Double("rope_theta", &config->rope_theta));
  }
  return ParseRopeScaling(*rope, &config->rope_scaling);
}

// Qwen2's "layer_types": one "full_attention" or "sliding_attention" entry per
// hidden layer, in any pattern (Qwen2Attention reads its own layer's entry).
absl::Status ParseLayerTypes(const Json& types, int64_t num_layers,
                             std::vector<bool>* windowed) {
  if (!types.is_array() || static_cast<int64_t>(types.size()) != num_layers) {
    const std::string found = types.is_array()
                                  ? absl::StrCat(types.size(), " entries")
                                  : types.dump();
    return absl::InvalidArgumentError(
        absl::StrCat("key \"layer_types\": expected a list of one entry per "
                     "hidden layer (", num_layers, "), found ", found));
  }
  windowed->clear();
  for (const Json& t : types) {
    if (t != "full_attention" && t != "sliding_attention") {
      return KeyError("layer_types",
                      "entries \"full_attention\" or \"sliding_attention\"", t);
    }
    windowed->push_back(t == "sliding_attention");
  }
  return absl::OkStatus();
}

// Mistral and Qwen2 default the window to 4096 when the key is absent (not
// when it is null), as MistralConfig and Qwen2Config do. Leaves
// windowed_layers in its one representation (see ModelConfig).
absl::Status ParseSlidingWindow(const Json& json, const KeyReader& reader,
                                ModelConfig* config) {
  bool enabled = config->model_type == "mistral";
  std::vector<bool> windowed;  // empty: every layer
  if (config->model_type == "qwen2") {
    CONFIG_RETURN_IF_ERROR(reader.Bool("use_sliding_window", &enabled));
    int64_t full_layers = 28;
    CONFIG_RETURN_IF_ERROR(
        reader.Int("max_window_layers", false, &full_layers));
    if (full_layers < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_window_layers: expected a non-negative value, found ",
          full_layers));
    }
    // layer_types, when given, decides alone (max_window_layers is then
    // unused, as in Qwen2Config); it is checked even with the window off.
    if (const Json* types = reader.Find("layer_types"); types != nullptr) {
      CONFIG_RETURN_IF_ERROR(
          ParseLayerTypes(*types, config->num_hidden_layers, &windowed));
    } else {
      for (int64_t l = 0; l < config->num_hidden_layers; ++l) {
        windowed.push_back(l >= full_layers);
      }
    }
  }
  if (!enabled) return absl::OkStatus();
  int64_t window = 4096;
  if (json.contains("sliding_window")) {
    if (reader.Find("sliding_window") == nullptr) return absl::OkStatus();
    CONFIG_RETURN_IF_ERROR(reader.Int("sliding_window", true, &window));
  }
  auto all = [&windowed](bool value) {
    return std::find(windowed.begin(), windowed.end(), !value) ==
           windowed.end();
  };
  // A window no prompt can exceed, or one no layer uses, is no window.
  if (window >= config->max_position_embeddings ||
      (!windowed.empty() && all(false))) {
    return absl::OkStatus();
  }
  if (all(true)) windowed.clear();
  config->sliding_window = window;
  config->windowed_layers = std::move(windowed);
  return absl::OkStatus();
}

absl::Status ParseOptions(const KeyReader& reader, ModelConfig* config) {
  std::string activation = "silu";
  CONFIG_RETURN_IF_ERROR(reader.String("hidden_act", false, &activation));
  if (activation != "silu") {
    return absl::UnimplementedError(absl::StrCat(
        "hidden_act \"", activation, "\" is not supported (expected silu)"));
  }
  CONFIG_RETURN_IF_ERROR(
      reader.Double("rms_norm_eps", &config->rms_norm_eps));
  CONFIG_RETURN_IF_ERROR(
      reader.Bool("tie_word_embeddings", &config->tie_word_embeddings));
  // The bias keys are read for llama only; Qwen2's and Mistral's modeling
  // code ignores them (see ModelConfig::attention_bias).
  bool attention_bias = false, mlp_bias = false;
  CONFIG_RETURN_IF_ERROR(reader.Bool("attention_bias", &attention_bias));
  CONFIG_RETURN_IF_ERROR(reader.Bool("mlp_bias", &mlp_bias));
  if (config->model_type == "llama") {
    config->attention_bias = attention_bias;
    config->mlp_bias = mlp_bias;
  }
  if (config->model_type == "qwen2") config->attention_bias = true;
  if (reader.Find("torch_dtype") != nullptr) {
    return reader.String("torch_dtype", true, &config->torch_dtype);
  }
  return reader.String("dtype", false, &config->torch_dtype);
}

absl::StatusOr<ModelConfig> ParseConfig(const Json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected config.json to hold a JSON object, found ",
        json.type_name()));
  }
  KeyReader reader(json);
  ModelConfig config;
  CONFIG_RETURN_IF_ERROR(reader.String("model_type", true,
                                           &config.model_type));
  if (config.model_type != "llama" && config.model_type != "mistral" &&
      config.model_type != "qwen2") {
    return absl::InvalidArgumentError(absl::StrCat(
        "model_type \"", config.model_type,
        "\" is not supported (expected llama, mistral or qwen2)"));
  }
  CONFIG_RETURN_IF_ERROR(ParseSizes(reader, &config));
  CONFIG_RETURN_IF_ERROR(ParseRope(reader, &config));
  CONFIG_RETURN_IF_ERROR(ParseOptions(reader, &config));
  CONFIG_RETURN_IF_ERROR(ParseTokenIds(reader, &config));
  CONFIG_RETURN_IF_ERROR(ParseSlidingWindow(json, reader, &config));
  CONFIG_RETURN_IF_ERROR(config.Validate());
  return config;
}

absl::Status PositiveReal(const char* field, double value) {
  if (value > 0 && std::isfinite(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected a positive finite value, found ", value));
}

absl::Status ValidateRopeScaling(const RopeScaling& rope) {
  if (rope.type == RopeScalingType::kNone) return absl::OkStatus();
  CONFIG_RETURN_IF_ERROR(PositiveReal("rope_scaling.factor", rope.factor));
  if (rope.type != RopeScalingType::kLlama3) return absl::OkStatus();
  CONFIG_RETURN_IF_ERROR(
      PositiveReal("rope_scaling.low_freq_factor", rope.low_freq_factor));
  CONFIG_RETURN_IF_ERROR(
      PositiveReal("rope_scaling.high_freq_factor", rope.high_freq_factor));
  if (rope.high_freq_factor <= rope.low_freq_factor) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rope_scaling: expected high_freq_factor > low_freq_factor, found ",
        rope.high_freq_factor, " <= ", rope.low_freq_factor));
  }
  return Positive("rope_scaling.original_max_position_embeddings",
                  rope.original_max_position_embeddings);
}

absl::Status ValidateTokenIds(const ModelConfig& config) {
  if (config.bos_token_id.has_value() && *config.bos_token_id < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bos_token_id: expected a non-negative id, found ",
        *config.bos_token_id));
  }
  for (int64_t id : config.eos_token_ids) {
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "eos_token_id: expected non-negative ids, found ", id));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSlidingWindow(const ModelConfig& config) {
  const std::vector<bool>& windowed = config.windowed_layers;
  if (!config.sliding_window.has_value()) {
    if (windowed.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        "windowed_layers: expected none without a sliding window, found ",
        windowed.size()));
  }
  if (config.model_type == "llama") {
    return absl::InvalidArgumentError(
        "sliding_window: llama models have no sliding window");
  }
  CONFIG_RETURN_IF_ERROR(Positive("sliding_window", *config.sliding_window));
  if (!windowed.empty()) {
    const auto count = std::count(windowed.begin(), windowed.end(), true);
    if (config.model_type == "mistral" ||
        static_cast<int64_t>(windowed.size()) != config.num_hidden_layers ||
        count == 0 || count == static_cast<int64_t>(windowed.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "windowed_layers: expected empty (every layer windowed; always for "
          "mistral) or one entry per layer (", config.num_hidden_layers,
          ") mixing full and windowed layers, found ", windowed.size(),
          " entries, ", count, " windowed"));
    }
  }
  if (*config.sliding_window >= config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sliding_window: expected a value below max_position_embeddings ",
        config.max_position_embeddings, " (or none), found ",
        *config.sliding_window));
  }
  return absl::OkStatus();
}

const char* Architecture(const std::string& model_type) {
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  if (model_type == "mistral") return "MistralForCausalLM";
  return "LlamaForCausalLM";
}

nlohmann::ordered_json RopeScalingJson(const RopeScaling& rope) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  switch (rope.type) {
    case RopeScalingType::kNone:
      return nullptr;
    case RopeScalingType::kLinear:
      json["rope_type"] = "linear";
      json["factor"] = rope.factor;
      return json;
    case RopeScalingType::kLlama3:
      json["rope_type"] = "llama3";
      json["factor"] = rope.factor;
      json["low_freq_factor"] = rope.low_freq_factor;
      json["high_freq_factor"] = rope.high_freq_factor;
      json["original_max_position_embeddings"] =
          rope.original_max_position_embeddings;
      return json;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::FromJson(std::string_view json_text) {
  // Before parsing: KeyError's dump() of the value found recurses.
  if (absl::Status s = CheckJsonNesting(json_text); !s.ok()) return s;
  Json json = Json::parse(json_text.begin(), json_text.end(), /*cb=*/nullptr,
                          /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError("config is not valid JSON");
  }
  try {
    return ParseConfig(json);
  } catch (const std::exception& e) {  // not expected; keeps the contract
    return absl::InvalidArgumentError(
        absl::StrCat("cannot parse config: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  absl::StatusOr<ModelConfig> config = FromJson(text.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

std::string ModelConfig::ToJson() const {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  json["architectures"] =
      nlohmann::ordered_json::array({Architecture(model_type)});
  json["model_type"] = model_type;
  json["vocab_size"] = vocab_size;
  json["hidden_size"] = hidden_size;
  json["intermediate_size"] = intermediate_size;
  json["num_hidden_layers"] = num_hidden_layers;
  json["num_attention_heads"] = num_attention_heads;
  json["num_key_value_heads"] = num_key_value_heads;
  json["head_dim"] = head_dim;
  json["hidden_act"] = "silu";
  json["max_position_embeddings"] = max_position_embeddings;
  json["rms_norm_eps"] = rms_norm_eps;
  json["rope_theta"] = rope_theta;
  json["rope_scaling"] = RopeScalingJson(rope_scaling);
  json["tie_word_embeddings"] = tie_word_embeddings;
  json["attention_bias"] = attention_bias;
  // Written only when set, so that configs without it keep their text (and
  // their models' fingerprints).
  if (mlp_bias) json["mlp_bias"] = true;
  if (bos_token_id.has_value()) json["bos_token_id"] = *bos_token_id;
  if (eos_token_ids.size() == 1) {
    json["eos_token_id"] = eos_token_ids[0];
  } else if (!eos_token_ids.empty()) {
    json["eos_token_id"] = eos_token_ids;
  }
  if (!torch_dtype.empty()) json["torch_dtype"] = torch_dtype;
  if (model_type == "qwen2") {
    json["use_sliding_window"] = sliding_window.has_value();
    if (sliding_window.has_value()) {
      // Full layers then windowed ones is what max_window_layers says (and
      // what these configs have always written); other patterns need
      // layer_types.
      const std::vector<bool>& w = windowed_layers;
      const auto first = std::find(w.begin(), w.end(), true);
      if (std::find(first, w.end(), false) == w.end()) {
        json["max_window_layers"] = first - w.begin();
      } else {
        nlohmann::ordered_json types = nlohmann::ordered_json::array();
        for (bool slides : w) {
          types.push_back(slides ? "sliding_attention" : "full_attention");
        }
        json["layer_types"] = types;
      }
    }
  }
  if (sliding_window.has_value()) {
    json["sliding_window"] = *sliding_window;
  } else if (model_type == "mistral") {
    json["sliding_window"] = nullptr;
  }
  // Strings come from parsed JSON or the caller; replace invalid UTF-8
  // rather than throw.
  return json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

absl::Status ModelConfig::Validate() const {
  if (model_type != "llama" && model_type != "mistral" &&
      model_type != "qwen2") {
    return absl::InvalidArgumentError(absl::StrCat(
        "model_type \"", model_type,
        "\" is not supported (expected llama, mistral or qwen2)"));
  }
  CONFIG_RETURN_IF_ERROR(Positive("vocab_size", vocab_size));
  CONFIG_RETURN_IF_ERROR(Positive("hidden_size", hidden_size));
  CONFIG_RETURN_IF_ERROR(Positive("intermediate_size", intermediate_size));
  CONFIG_RETURN_IF_ERROR(ValidateLayerCount(num_hidden_layers));
  CONFIG_RETURN_IF_ERROR(
      Positive("num_attention_heads", num_attention_heads));
  CONFIG_RETURN_IF_ERROR(
      Positive("num_key_value_heads", num_key_value_heads));
  if (num_attention_heads % num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_attention_heads ", num_attention_heads,
        " is not a multiple of num_key_value_heads ", num_key_value_heads));
  }
  CONFIG_RETURN_IF_ERROR(Positive("head_dim", head_dim));
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head_dim: expected an even value (RoPE rotates pairs), found ",
        head_dim));
  }
  CONFIG_RETURN_IF_ERROR(
      Positive("max_position_embeddings", max_position_embeddings));
  CONFIG_RETURN_IF_ERROR(PositiveReal("rms_norm_eps", rms_norm_eps));
  CONFIG_RETURN_IF_ERROR(PositiveReal("rope_theta", rope_theta));
  CONFIG_RETURN_IF_ERROR(ValidateRopeScaling(rope_scaling));
  CONFIG_RETURN_IF_ERROR(ValidateTokenIds(*this));
  CONFIG_RETURN_IF_ERROR(ValidateSlidingWindow(*this));
  if (model_type == "qwen2" && !attention_bias) {
    return absl::InvalidArgumentError(
        "attention_bias: qwen2 models always have q/k/v biases, found false");
  }
  if (model_type == "mistral" && attention_bias) {
    return absl::InvalidArgumentError(
        "attention_bias: mistral models have no attention biases, found true");
  }
  if (model_type != "llama" && mlp_bias) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mlp_bias: only llama models have MLP biases, found true for ",
        model_type));
  }
  return absl::OkStatus();
}

#undef CONFIG_RETURN_IF_ERROR

}  // namespace blockserve::engine
