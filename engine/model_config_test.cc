#include "engine/model_config.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace blockserve::engine {
namespace {

constexpr char kLlama31Config[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

constexpr char kQwen2Config[] = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

constexpr char kMistralConfig[] = R"({
  "architectures": ["MistralForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.34.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

constexpr char kMinimalConfig[] = R"({
  "model_type": "llama",
  "vocab_size": 256,
  "hidden_size": 64,
  "intermediate_size": 128,
  "num_hidden_layers": 2,
  "num_attention_heads": 4
})";

// Passed as a value to ParseWith to erase the key.
const nlohmann::json kErase(nlohmann::json::value_t::discarded);

// Parses `base` after setting (or, for kErase, erasing) `key`.
absl::StatusOr<ModelConfig> ParseWith(const char* base, const std::string& key,
                                      const nlohmann::json& value) {
  nlohmann::json json = nlohmann::json::parse(base);
  if (value.is_discarded()) {
    json.erase(key);
  } else {
    json[key] = value;
  }
  return ModelConfig::FromJson(json.dump());
}

std::string Message(const absl::Status& status) {
  return std::string(status.message());
}

TEST(ModelConfigTest, ParsesLlama31ConfigWithLlama3RopeScaling) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(kLlama31Config);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "llama");
  EXPECT_EQ(config->vocab_size, 128256);
  EXPECT_EQ(config->hidden_size, 4096);
  EXPECT_EQ(config->intermediate_size, 14336);
  EXPECT_EQ(config->num_hidden_layers, 32);
  EXPECT_EQ(config->num_attention_heads, 32);
  EXPECT_EQ(config->num_key_value_heads, 8);
  EXPECT_EQ(config->head_dim, 128);
  EXPECT_EQ(config->max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(config->rope_theta, 500000.0);
  EXPECT_EQ(config->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(config->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->attention_bias);
  EXPECT_EQ(config->bos_token_id, 128000);
  EXPECT_EQ(config->eos_token_ids,
            (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(config->torch_dtype, "bfloat16");
  EXPECT_FALSE(config->sliding_window.has_value());
}

TEST(ModelConfigTest, ParsesQwen2ConfigWithAttentionBiasAlwaysOn) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(kQwen2Config);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "qwen2");
  EXPECT_EQ(config->head_dim, 64);  // 896 / 14, no head_dim key
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_TRUE(config->attention_bias);
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_DOUBLE_EQ(config->rope_theta, 1e6);
  EXPECT_EQ(config->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{151645}));
  // use_sliding_window is false, so the window is ignored.
  EXPECT_FALSE(config->sliding_window.has_value());

  absl::StatusOr<ModelConfig> explicit_false =
      ParseWith(kQwen2Config, "attention_bias", false);
  ASSERT_TRUE(explicit_false.ok()) << explicit_false.status();
  EXPECT_TRUE(explicit_false->attention_bias);
}

TEST(ModelConfigTest, Qwen2WithUseSlidingWindowRecordsTheWindow) {
  nlohmann::json json = nlohmann::json::parse(kQwen2Config);
  json["use_sliding_window"] = true;
  json["sliding_window"] = 4096;
  json["max_window_layers"] = 20;  // layers 20..23 slide
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(json.dump());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->sliding_window, 4096);
  std::vector<bool> windowed(24, false);
  for (int i = 20; i < 24; ++i) windowed[i] = true;
  EXPECT_EQ(config->windowed_layers, windowed);
  EXPECT_FALSE(config->LayerWindow(19).has_value());
  EXPECT_EQ(config->LayerWindow(20), 4096);
  EXPECT_EQ(config->LayerWindow(23), 4096);

  // Qwen2Config's defaults: max_window_layers 28 (>= 24 layers: no layer slides, so
  // no window), and a 4096 window when the key is absent.
  json.erase("max_window_layers");
  config = ModelConfig::FromJson(json.dump());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->sliding_window.has_value());
  json["max_window_layers"] = 0;
  json.erase("sliding_window");
  config = ModelConfig::FromJson(json.dump());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->sliding_window, 4096);
  EXPECT_TRUE(config->windowed_layers.empty()) << "every layer slides: the empty form";
  EXPECT_EQ(config->LayerWindow(0), 4096);
  EXPECT_EQ(config->LayerWindow(23), 4096);
}

// Qwen2 with use_sliding_window and the given "layer_types" (24 layers, window 1024).
absl::StatusOr<ModelConfig> Qwen2WithLayerTypes(const nlohmann::json& types) {
  nlohmann::json json = nlohmann::json::parse(kQwen2Config);
  json["use_sliding_window"] = true;
  json["sliding_window"] = 1024;
  json["layer_types"] = types;
  return ModelConfig::FromJson(json.dump());
}

TEST(ModelConfigTest, Qwen2LayerTypesGiveAnyPatternOfWindowedLayers) {
  // Alternating, starting with a windowed layer: layer l slides iff l is even.
  std::vector<std::string> types(24, "full_attention");
  for (int i = 0; i < 24; i += 2) types[i] = "sliding_attention";
  absl::StatusOr<ModelConfig> config = Qwen2WithLayerTypes(types);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->sliding_window, 1024);
  ASSERT_EQ(config->windowed_layers.size(), 24u);
  for (int l = 0; l < 24; ++l) {
    EXPECT_EQ(config->windowed_layers[l], l % 2 == 0) << l;
    EXPECT_EQ(config->LayerWindow(l), l % 2 == 0 ? std::optional<int64_t>(1024) : std::nullopt)
        << l;
  }
  // The pattern survives ToJson (written as layer_types: max_window_layers cannot say it).
  const std::string json = config->ToJson();
  EXPECT_NE(json.find("\"layer_types\""), std::string::npos) << json;
  absl::StatusOr<ModelConfig> back = ModelConfig::FromJson(json);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << json;
  EXPECT_EQ(*back, *config);

  // layer_types decides, whatever max_window_layers says (21 in this sample).
  std::vector<std::string> last_full(24, "sliding_attention");
  last_full[23] = "full_attention";
  config = Qwen2WithLayerTypes(last_full);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->LayerWindow(0), 1024);
  EXPECT_FALSE(config->LayerWindow(23).has_value());
}

TEST(ModelConfigTest, Qwen2LayerTypesAgreeWithMaxWindowLayers) {
  nlohmann::json json = nlohmann::json::parse(kQwen2Config);
  json["use_sliding_window"] = true;
  json["sliding_window"] = 1024;
  for (int full : {0, 10, 23, 24}) {
    std::vector<std::string> types(24, "sliding_attention");
    for (int i = 0; i < full; ++i) types[i] = "full_attention";
    absl::StatusOr<ModelConfig> from_types = Qwen2WithLayerTypes(types);
    json["max_window_layers"] = full;
    absl::StatusOr<ModelConfig> from_count = ModelConfig::FromJson(json.dump());
    ASSERT_TRUE(from_types.ok()) << from_types.status();
    ASSERT_TRUE(from_count.ok()) << from_count.status();
    EXPECT_EQ(*from_types, *from_count) << full << " full layers";
    // All full: no layer slides, so no window at all.
    EXPECT_EQ(from_types->sliding_window.has_value(), full < 24) << full;
    // This pattern is written back as max_window_layers, as it always was.
    if (full < 24) {
      EXPECT_EQ(from_types->ToJson().find("layer_types"), std::string::npos);
      EXPECT_NE(from_types->ToJson().find("\"max_window_layers\": " + std::to_string(full)),
                std::string::npos)
          << from_types->ToJson();
    }
  }
}

TEST(ModelConfigTest, Qwen2LayerTypesOfTheWrongLengthOrKindAreRejectedByName) {
  std::vector<std::string> types(24, "sliding_attention");
  types[3] = "full_attention";
  std::vector<nlohmann::json> bad = {
      std::vector<std::string>(types.begin(), types.end() - 1),  // 23 entries
      std::vector<std::string>(25, "sliding_attention"),
      nlohmann::json("sliding_attention"),
      nlohmann::json::array({1, 2}),
  };
  std::vector<std::string> unknown = types;
  unknown[5] = "chunked_attention";
  bad.push_back(unknown);
  nlohmann::json with_null = types;
  with_null[7] = nullptr;
  bad.push_back(with_null);
  for (const nlohmann::json& value : bad) {
    absl::StatusOr<ModelConfig> config = Qwen2WithLayerTypes(value);
    ASSERT_FALSE(config.ok()) << value.dump();
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
    EXPECT_NE(Message(config.status()).find("layer_types"), std::string::npos)
        << config.status();
  }
  EXPECT_NE(Message(Qwen2WithLayerTypes(unknown).status()).find("chunked_attention"),
            std::string::npos);
  EXPECT_NE(Message(Qwen2WithLayerTypes(bad[0]).status()).find("23 entries"), std::string::npos);
  // Checked with the window off too (Qwen2Config validates the list either way).
  absl::StatusOr<ModelConfig> off = ParseWith(kQwen2Config, "layer_types", unknown);
  EXPECT_EQ(off.status().code(), absl::StatusCode::kInvalidArgument) << off.status();
  absl::StatusOr<ModelConfig> off_ok = ParseWith(kQwen2Config, "layer_types", types);
  ASSERT_TRUE(off_ok.ok()) << off_ok.status();
  EXPECT_FALSE(off_ok->sliding_window.has_value());
}

// Parsing builds per-layer data (windowed_layers), so an absurd layer count is refused
// before it, not allocated.
TEST(ModelConfigTest, LayerCountsBeyondTheBoundAreRejected) {
  nlohmann::json json = nlohmann::json::parse(kQwen2Config);
  json["use_sliding_window"] = true;
  json["sliding_window"] = 1024;
  json["max_window_layers"] = 1;
  json["num_hidden_layers"] = ModelConfig::kMaxHiddenLayers;
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(json.dump());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->windowed_layers.size(), size_t{ModelConfig::kMaxHiddenLayers});
  json["num_hidden_layers"] = int64_t{1} << 50;
  config = ModelConfig::FromJson(json.dump());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(config.status()).find("num_hidden_layers"), std::string::npos)
      << config.status();
}

TEST(ModelConfigTest, BiasesFollowEachFamilysModelingCode) {
  // llama: attention_bias covers q/k/v and o_proj; mlp_bias the MLP.
  absl::StatusOr<ModelConfig> llama =
      ParseWith(kMinimalConfig, "attention_bias", true);
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_TRUE(llama->attention_bias);
  EXPECT_TRUE(llama->o_proj_bias());
  EXPECT_FALSE(llama->mlp_bias);
  absl::StatusOr<ModelConfig> llama_mlp = ParseWith(kMinimalConfig, "mlp_bias", true);
  ASSERT_TRUE(llama_mlp.ok()) << llama_mlp.status();
  EXPECT_TRUE(llama_mlp->mlp_bias);
  EXPECT_FALSE(llama_mlp->o_proj_bias());
  // qwen2: q/k/v bias, never o_proj or MLP; mistral: none; both ignore the keys.
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    absl::StatusOr<ModelConfig> qwen2 = ParseWith(kQwen2Config, key, true);
    ASSERT_TRUE(qwen2.ok()) << qwen2.status();
    EXPECT_TRUE(qwen2->attention_bias);
    EXPECT_FALSE(qwen2->o_proj_bias());
    EXPECT_FALSE(qwen2->mlp_bias);
    absl::StatusOr<ModelConfig> mistral = ParseWith(kMistralConfig, key, true);
    ASSERT_TRUE(mistral.ok()) << mistral.status();
    EXPECT_FALSE(mistral->attention_bias);
    EXPECT_FALSE(mistral->mlp_bias);
  }
  // Round trip keeps mlp_bias.
  absl::StatusOr<ModelConfig> back = ModelConfig::FromJson(llama_mlp->ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *llama_mlp);
}

TEST(ModelConfigTest, ParsesMistralConfigAndRecordsSlidingWindow) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(kMistralConfig);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "mistral");
  EXPECT_EQ(config->sliding_window, 4096);
  EXPECT_FALSE(config->attention_bias);
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{2}));
}

TEST(ModelConfigTest, MistralWindowThatIsNullOrCoversAllPositionsIsNone) {
  for (const nlohmann::json& window :
       {nlohmann::json(nullptr), nlohmann::json(32768),
        nlohmann::json(100000)}) {
    absl::StatusOr<ModelConfig> config =
        ParseWith(kMistralConfig, "sliding_window", window);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_FALSE(config->sliding_window.has_value()) << window.dump();
  }
  // An absent key is MistralConfig's default, 4096 (null is "no window").
  absl::StatusOr<ModelConfig> config =
      ParseWith(kMistralConfig, "sliding_window", kErase);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->sliding_window, 4096);
  EXPECT_TRUE(config->windowed_layers.empty());
  EXPECT_EQ(config->LayerWindow(0), 4096);
  EXPECT_EQ(config->LayerWindow(31), 4096);
}

TEST(ModelConfigTest, MissingOptionalKeysGetLlamaConfigDefaults) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(kMinimalConfig);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->head_dim, 16);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(config->rope_theta, 10000.0);
  EXPECT_EQ(config->max_position_embeddings, 2048);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->attention_bias);
  EXPECT_EQ(config->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(config->bos_token_id.has_value());
  EXPECT_TRUE(config->eos_token_ids.empty());
  EXPECT_EQ(config->torch_dtype, "");
}

TEST(ModelConfigTest, NullValuesCountAsMissing) {
  nlohmann::json json = nlohmann::json::parse(kMinimalConfig);
  json["num_key_value_heads"] = nullptr;
  json["head_dim"] = nullptr;
  json["rope_scaling"] = nullptr;
  json["bos_token_id"] = nullptr;
  json["eos_token_id"] = nullptr;
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(json.dump());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->head_dim, 16);
  EXPECT_FALSE(config->bos_token_id.has_value());
  EXPECT_TRUE(config->eos_token_ids.empty());
}

TEST(ModelConfigTest, ExplicitHeadDimOverridesHiddenOverHeads) {
  absl::StatusOr<ModelConfig> config =
      ParseWith(kMinimalConfig, "head_dim", 32);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->head_dim, 32);
}

TEST(ModelConfigTest, EosTokenIdMayBeAnIntOrAList) {
  absl::StatusOr<ModelConfig> single =
      ParseWith(kMinimalConfig, "eos_token_id", 7);
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ(single->eos_token_ids, (std::vector<int64_t>{7}));
  absl::StatusOr<ModelConfig> list =
      ParseWith(kMinimalConfig, "eos_token_id", {7, 9});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->eos_token_ids, (std::vector<int64_t>{7, 9}));
  absl::StatusOr<ModelConfig> bad =
      ParseWith(kMinimalConfig, "eos_token_id", {7, "x"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(Message(bad.status()).find("eos_token_id"), std::string::npos);
}

TEST(ModelConfigTest, LinearScalingAndOlderTypeKeyAreAccepted) {
  absl::StatusOr<ModelConfig> linear = ParseWith(
      kMinimalConfig, "rope_scaling", {{"type", "linear"}, {"factor", 2.0}});
  ASSERT_TRUE(linear.ok()) << linear.status();
  EXPECT_EQ(linear->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(linear->rope_scaling.factor, 2.0);

  absl::StatusOr<ModelConfig> by_default =
      ParseWith(kMinimalConfig, "rope_scaling", {{"rope_type", "default"}});
  ASSERT_TRUE(by_default.ok()) << by_default.status();
  EXPECT_EQ(by_default->rope_scaling.type, RopeScalingType::kNone);

  absl::StatusOr<ModelConfig> no_factor =
      ParseWith(kMinimalConfig, "rope_scaling", {{"rope_type", "linear"}});
  ASSERT_FALSE(no_factor.ok());
  EXPECT_NE(Message(no_factor.status()).find("\"factor\""), std::string::npos);
}

TEST(ModelConfigTest, NewerRopeParametersKeyIsAccepted) {
  absl::StatusOr<ModelConfig> config =
      ParseWith(kMinimalConfig, "rope_parameters",
                {{"rope_type", "default"}, {"rope_theta", 250000.0}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_DOUBLE_EQ(config->rope_theta, 250000.0);
  EXPECT_EQ(config->rope_scaling.type, RopeScalingType::kNone);
}

TEST(ModelConfigTest, UnsupportedRopeTypesAreUnimplementedAndNamed) {
  for (const char* type : {"yarn", "dynamic", "longrope"}) {
    absl::StatusOr<ModelConfig> config = ParseWith(
        kMinimalConfig, "rope_scaling", {{"rope_type", type}, {"factor", 4.0}});
    ASSERT_FALSE(config.ok()) << type;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(Message(config.status()).find(std::string("\"") + type + "\""),
              std::string::npos)
        << config.status();
  }
  absl::StatusOr<ModelConfig> older = ParseWith(
      kMinimalConfig, "rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}});
  EXPECT_EQ(older.status().code(), absl::StatusCode::kUnimplemented);
}

TEST(ModelConfigTest, UnsupportedModelTypeIsRejectedByName) {
  absl::StatusOr<ModelConfig> config =
      ParseWith(kMinimalConfig, "model_type", "gpt2");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(config.status()).find("\"gpt2\""), std::string::npos);
}

TEST(ModelConfigTest, UnsupportedActivationIsUnimplemented) {
  EXPECT_EQ(ParseWith(kMinimalConfig, "hidden_act", "gelu").status().code(),
            absl::StatusCode::kUnimplemented);
}

TEST(ModelConfigTest, HeadsThatDoNotDivideAreRejected) {
  absl::StatusOr<ModelConfig> kv =
      ParseWith(kLlama31Config, "num_key_value_heads", 5);
  ASSERT_FALSE(kv.ok());
  EXPECT_EQ(kv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(kv.status()).find("num_key_value_heads 5"),
            std::string::npos)
      << kv.status();

  absl::StatusOr<ModelConfig> hidden =
      ParseWith(kMinimalConfig, "num_attention_heads", 3);  // 64 / 3
  ASSERT_FALSE(hidden.ok());
  EXPECT_NE(Message(hidden.status()).find("not divisible"), std::string::npos)
      << hidden.status();
}

TEST(ModelConfigTest, MissingRequiredKeysAndWrongTypesNameTheKey) {
  for (const char* key : {"model_type", "vocab_size", "hidden_size",
                          "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"}) {
    absl::StatusOr<ModelConfig> config =
        ParseWith(kMinimalConfig, key, kErase);
    ASSERT_FALSE(config.ok()) << key;
    EXPECT_NE(Message(config.status())
                  .find(std::string("missing required key \"") + key),
              std::string::npos)
        << config.status();
  }
  absl::StatusOr<ModelConfig> wrong =
      ParseWith(kMinimalConfig, "hidden_size", "big");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(Message(wrong.status())
                .find("\"hidden_size\": expected an integer, found \"big\""),
            std::string::npos)
      << wrong.status();
  EXPECT_FALSE(ParseWith(kMinimalConfig, "hidden_size", 64.5).ok());
  EXPECT_TRUE(ParseWith(kMinimalConfig, "hidden_size", 64.0).ok());
  EXPECT_FALSE(ParseWith(kMinimalConfig, "tie_word_embeddings", 1).ok());
  EXPECT_FALSE(ParseWith(kMinimalConfig, "rope_theta", "1e4").ok());
}

TEST(ModelConfigTest, NonJsonAndNonObjectTextIsRejected) {
  for (const char* text : {"", "{", "not json", "[1, 2]", "42"}) {
    absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(text);
    ASSERT_FALSE(config.ok()) << text;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ModelConfigTest, ValidateRejectsOutOfRangeValuesNamingTheField) {
  const ModelConfig good = *ModelConfig::FromJson(kLlama31Config);
  ASSERT_TRUE(good.Validate().ok());
  struct Case {
    void (*mutate)(ModelConfig&);
    const char* expected_in_message;
  };
  const Case cases[] = {
      {[](ModelConfig& c) { c.vocab_size = 0; }, "vocab_size"},
      {[](ModelConfig& c) { c.hidden_size = -1; }, "hidden_size"},
      {[](ModelConfig& c) { c.intermediate_size = 0; }, "intermediate_size"},
      {[](ModelConfig& c) { c.num_hidden_layers = 0; }, "num_hidden_layers"},
      {[](ModelConfig& c) { c.num_key_value_heads = 0; },
       "num_key_value_heads"},
      {[](ModelConfig& c) { c.num_key_value_heads = 3; }, "not a multiple"},
      {[](ModelConfig& c) { c.head_dim = 127; }, "head_dim"},
      {[](ModelConfig& c) { c.rms_norm_eps = 0; }, "rms_norm_eps"},
      {[](ModelConfig& c) { c.rope_theta = -1; }, "rope_theta"},
      {[](ModelConfig& c) { c.rope_scaling.factor = 0; },
       "rope_scaling.factor"},
      {[](ModelConfig& c) { c.rope_scaling.high_freq_factor = 1; },
       "high_freq_factor"},
      {[](ModelConfig& c) { c.max_position_embeddings = 0; },
       "max_position_embeddings"},
      {[](ModelConfig& c) { c.bos_token_id = -1; }, "bos_token_id"},
      {[](ModelConfig& c) { c.eos_token_ids.push_back(-2); }, "eos_token_id"},
      {[](ModelConfig& c) { c.num_hidden_layers = ModelConfig::kMaxHiddenLayers + 1; },
       "num_hidden_layers"},
      {[](ModelConfig& c) { c.sliding_window = 1024; }, "sliding_window"},
      {[](ModelConfig& c) { c.windowed_layers = {false, true}; }, "windowed_layers"},
      {[](ModelConfig& c) {
         c.model_type = "mistral";
         c.sliding_window = 16;
         c.windowed_layers.assign(32, true);
         c.windowed_layers[0] = false;
       },
       "windowed_layers"},
      {[](ModelConfig& c) {  // one entry short
         c.model_type = "qwen2";
         c.attention_bias = true;
         c.sliding_window = 16;
         c.windowed_layers.assign(31, true);
         c.windowed_layers[0] = false;
       },
       "windowed_layers"},
      {[](ModelConfig& c) {  // every layer windowed must be the empty form
         c.model_type = "qwen2";
         c.attention_bias = true;
         c.sliding_window = 16;
         c.windowed_layers.assign(32, true);
       },
       "windowed_layers"},
      {[](ModelConfig& c) {  // no layer windowed: no window
         c.model_type = "qwen2";
         c.attention_bias = true;
         c.sliding_window = 16;
         c.windowed_layers.assign(32, false);
       },
       "windowed_layers"},
      {[](ModelConfig& c) {
         c.model_type = "mistral";
         c.attention_bias = true;
       },
       "attention_bias"},
      {[](ModelConfig& c) {
         c.model_type = "qwen2";
         c.attention_bias = true;
         c.mlp_bias = true;
       },
       "mlp_bias"},
      {[](ModelConfig& c) { c.model_type = "bert"; }, "\"bert\""},
      {[](ModelConfig& c) {
         c.model_type = "qwen2";
         c.attention_bias = false;
       },
       "attention_bias"},
  };
  for (const Case& c : cases) {
    ModelConfig config = good;
    c.mutate(config);
    absl::Status status = config.Validate();
    ASSERT_FALSE(status.ok()) << c.expected_in_message;
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(Message(status).find(c.expected_in_message), std::string::npos)
        << status;
  }
}

TEST(ModelConfigTest, ToJsonRoundTripsEveryFamily) {
  for (const char* text :
       {kLlama31Config, kQwen2Config, kMistralConfig, kMinimalConfig}) {
    absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(text);
    ASSERT_TRUE(config.ok()) << config.status();
    const std::string json = config->ToJson();
    absl::StatusOr<ModelConfig> back = ModelConfig::FromJson(json);
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << json;
    EXPECT_EQ(*back, *config) << json;
  }
  // Values that are not defaults in any sample also survive.
  ModelConfig config = *ModelConfig::FromJson(kMinimalConfig);
  config.rope_scaling = {RopeScalingType::kLinear, 2.5};
  config.rms_norm_eps = 1.234567890123e-7;
  config.eos_token_ids = {3, 4};
  config.bos_token_id = 0;
  config.tie_word_embeddings = true;
  config.attention_bias = true;
  absl::StatusOr<ModelConfig> back = ModelConfig::FromJson(config.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, config);
}

TEST(ModelConfigTest, ToJsonWritesHuggingFaceArchitectures) {
  const std::pair<const char*, const char*> expected[] = {
      {kLlama31Config, "LlamaForCausalLM"},
      {kQwen2Config, "Qwen2ForCausalLM"},
      {kMistralConfig, "MistralForCausalLM"}};
  for (const auto& [text, architecture] : expected) {
    nlohmann::json json =
        nlohmann::json::parse(ModelConfig::FromJson(text)->ToJson());
    EXPECT_EQ(json["architectures"], nlohmann::json::array({architecture}));
  }
}

TEST(ModelConfigTest, FromFileReadsAFileAndPrefixesErrorsWithItsPath) {
  std::string tmpl = ::testing::TempDir() + "/model_config_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/config.json";
  {
    std::ofstream out(path);
    out << kQwen2Config;
  }
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "qwen2");
  {
    std::ofstream out(path);
    out << "{\"model_type\": \"llama\"}";
  }
  absl::StatusOr<ModelConfig> bad = ModelConfig::FromFile(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(Message(bad.status()).rfind(path, 0), 0u) << bad.status();
  absl::StatusOr<ModelConfig> missing =
      ModelConfig::FromFile(tmpl + "/absent.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove_all(tmpl);
}

// A value nested a million deep where a number belongs: KeyError's dump() of it recursed
// once per level and overflowed the stack (SIGSEGV). Refused before parsing.
TEST(ModelConfigTest, DeeplyNestedJsonIsInvalidArgumentNotAStackOverflow) {
  const int depth = 1'000'000;
  const std::string json = R"({"model_type": "llama", "vocab_size": )" +
                           std::string(depth, '[') + std::string(depth, ']') + "}";
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(json);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  EXPECT_NE(Message(config.status()).find("nested deeper than"), std::string::npos)
      << config.status();
}

}  // namespace
}  // namespace blockserve::engine
