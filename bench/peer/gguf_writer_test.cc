#include "bench/peer/gguf_writer.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <variant>

#include "bench/peer/hf_to_gguf.h"
#include "engine/dtype.h"
#include "engine/model_files.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace blockserve::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// An independent reader of the bytes, enough to check what the writer produced.
struct Reader {
  const std::string& b;
  size_t pos = 0;
  template <typename T>
  T Get() {
    EXPECT_LE(pos + sizeof(T), b.size());
    T v;
    std::memcpy(&v, b.data() + pos, sizeof(T));  // the test machine is little-endian (x86)
    pos += sizeof(T);
    return v;
  }
  std::string Str() {
    const uint64_t n = Get<uint64_t>();
    std::string s = b.substr(pos, n);
    pos += n;
    return s;
  }
};

using Value = std::variant<uint32_t, int32_t, float, bool, std::string, std::vector<std::string>,
                           std::vector<int32_t>>;

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type;
  uint64_t offset;
};

struct Parsed {
  uint32_t version = 0;
  std::vector<std::pair<std::string, Value>> kv;
  std::vector<TensorInfo> tensors;
  size_t data_start = 0;
  std::map<std::string, Value> Map() const { return {kv.begin(), kv.end()}; }
};

Parsed Parse(const std::string& bytes) {
  Reader r{bytes};
  Parsed p;
  EXPECT_EQ(bytes.substr(0, 4), "GGUF");
  r.pos = 4;
  p.version = r.Get<uint32_t>();
  const uint64_t n_tensors = r.Get<uint64_t>(), n_kv = r.Get<uint64_t>();
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.Str();
    const uint32_t type = r.Get<uint32_t>();
    switch (type) {
      case 4: p.kv.emplace_back(key, r.Get<uint32_t>()); break;
      case 5: p.kv.emplace_back(key, r.Get<int32_t>()); break;
      case 6: p.kv.emplace_back(key, r.Get<float>()); break;
      case 7: p.kv.emplace_back(key, r.Get<uint8_t>() != 0); break;
      case 8: p.kv.emplace_back(key, r.Str()); break;
      case 9: {
        const uint32_t elem = r.Get<uint32_t>();
        const uint64_t n = r.Get<uint64_t>();
        if (elem == 8) {
          std::vector<std::string> v;
          for (uint64_t j = 0; j < n; ++j) v.push_back(r.Str());
          p.kv.emplace_back(key, v);
        } else {
          EXPECT_EQ(elem, 5u) << key;
          std::vector<int32_t> v;
          for (uint64_t j = 0; j < n; ++j) v.push_back(r.Get<int32_t>());
          p.kv.emplace_back(key, v);
        }
        break;
      }
      default: ADD_FAILURE() << "unexpected value type " << type << " for " << key; return p;
    }
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = r.Str();
    const uint32_t dims = r.Get<uint32_t>();
    for (uint32_t d = 0; d < dims; ++d) t.ne.push_back(r.Get<uint64_t>());
    t.type = r.Get<uint32_t>();
    t.offset = r.Get<uint64_t>();
    p.tensors.push_back(t);
  }
  p.data_start = (r.pos + 31) / 32 * 32;
  for (size_t i = r.pos; i < p.data_start; ++i) EXPECT_EQ(bytes[i], '\0') << "header padding";
  return p;
}

std::string Serialize(const GgufWriter& w) {
  std::ostringstream out;
  EXPECT_TRUE(w.Write(out).ok());
  return out.str();
}

TEST(GgufWriterTest, HeaderMetadataTensorInfoAndAlignment) {
  GgufWriter w;
  w.AddUint32("a.u32", 7);
  w.AddString("a.str", "h\xc3\xa9llo");
  w.AddFloat32("a.f32", 1e-5f);
  w.AddBool("a.bool", true);
  w.AddStringArray("a.strs", {"x y", "", "z"});
  w.AddInt32Array("a.ints", {1, -3});
  w.AddTensor("t0", {3}, GgmlType::kF32, {1, 2, 3});
  w.AddTensor("t1", {2, 3}, GgmlType::kF16, {0.5f, -1, 2, 3.14159f, 65504, -0.0f});
  w.AddTensor("t2", {5}, GgmlType::kF32, {9, 8, 7, 6, 5});
  const std::string bytes = Serialize(w);
  const Parsed p = Parse(bytes);
  EXPECT_EQ(p.version, 3u);
  ASSERT_EQ(p.kv.size(), 7u);
  // general.alignment comes first, then the keys in the order added.
  EXPECT_EQ(p.kv[0].first, "general.alignment");
  EXPECT_EQ(std::get<uint32_t>(p.kv[0].second), 32u);
  EXPECT_EQ(p.kv[1].first, "a.u32");
  EXPECT_EQ(std::get<uint32_t>(p.kv[1].second), 7u);
  EXPECT_EQ(std::get<std::string>(p.kv[2].second), "h\xc3\xa9llo");
  EXPECT_EQ(std::get<float>(p.kv[3].second), 1e-5f);
  EXPECT_TRUE(std::get<bool>(p.kv[4].second));
  EXPECT_THAT(std::get<std::vector<std::string>>(p.kv[5].second), ElementsAre("x y", "", "z"));
  EXPECT_THAT(std::get<std::vector<int32_t>>(p.kv[6].second), ElementsAre(1, -3));
  ASSERT_EQ(p.tensors.size(), 3u);
  EXPECT_EQ(p.tensors[0].name, "t0");
  EXPECT_THAT(p.tensors[1].ne, ElementsAre(2u, 3u));
  EXPECT_EQ(p.tensors[0].type, 0u);
  EXPECT_EQ(p.tensors[1].type, 1u);
  // 12 bytes of t0 and 12 of t1, each rounded up to the 32-byte alignment.
  EXPECT_EQ(p.tensors[0].offset, 0u);
  EXPECT_EQ(p.tensors[1].offset, 32u);
  EXPECT_EQ(p.tensors[2].offset, 64u);
  EXPECT_EQ(p.data_start % 32, 0u);
  EXPECT_EQ(bytes.size(), p.data_start + 96);
  float f[3];
  std::memcpy(f, bytes.data() + p.data_start, 12);
  EXPECT_THAT(f, ElementsAre(1, 2, 3));
  for (int i = 12; i < 32; ++i) EXPECT_EQ(bytes[p.data_start + i], '\0') << "tensor padding";
  const float t1[] = {0.5f, -1, 2, 3.14159f, 65504, -0.0f};
  for (int i = 0; i < 6; ++i) {
    uint16_t h;
    std::memcpy(&h, bytes.data() + p.data_start + 32 + 2 * i, 2);
    EXPECT_EQ(h, engine::F32ToF16(t1[i])) << i;
  }
  std::memcpy(f, bytes.data() + p.data_start + 64, 12);
  EXPECT_THAT(f, ElementsAre(9, 8, 7));
}

TEST(GgufWriterTest, RejectsBadInput) {
  auto error = [](auto&& add) {
    GgufWriter w;
    add(w);
    std::ostringstream out;
    const absl::Status s = w.Write(out);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(out.str().empty()) << "nothing is written on error";
    return std::string(s.message());
  };
  EXPECT_THAT(error([](GgufWriter& w) { w.AddUint32("k", 1), w.AddInt32("k", 2); }), HasSubstr("k added twice"));
  EXPECT_THAT(error([](GgufWriter& w) { w.AddTensor("t", {2, 2}, GgmlType::kF32, {1, 2, 3}); }),
              HasSubstr("3 values for 4 elements"));
  EXPECT_THAT(error([](GgufWriter& w) { w.AddTensor(std::string(64, 'n'), {1}, GgmlType::kF32, {1}); }),
              HasSubstr("over 63 bytes"));
  EXPECT_THAT(error([](GgufWriter& w) { w.AddTensor("t", {}, GgmlType::kF32, {1}); }), HasSubstr("0 dims"));
  EXPECT_THAT(error([](GgufWriter& w) {
                w.AddTensor("t", {1}, GgmlType::kF32, {1}), w.AddTensor("t", {1}, GgmlType::kF32, {1});
              }),
              HasSubstr("t added twice"));
}

// Worked by hand: with head_dim 4 a head's rows (r0 r1 r2 r3) pair as (r0, r2), (r1, r3)
// in HF's rotate-half layout and must become adjacent: r0 r2 r1 r3.
TEST(GgufWriterTest, RopePermutationByHand) {
  EXPECT_THAT(PermuteRowsForGgmlRope({0, 1, 2, 3, 4, 5, 6, 7}, /*heads=*/2, /*cols=*/1),
              ElementsAre(0, 2, 1, 3, 4, 6, 5, 7));
  // head_dim 6, two columns per row: rows 0 1 2 3 4 5 -> 0 3 1 4 2 5.
  EXPECT_THAT(PermuteRowsForGgmlRope({0, 1, 10, 11, 20, 21, 30, 31, 40, 41, 50, 51}, 1, 2),
              ElementsAre(0, 1, 30, 31, 10, 11, 40, 41, 20, 21, 50, 51));
}

// The reason for the permutation: llama.cpp's adjacent-pair rotation of the permuted
// vector equals the permuted rotate-half rotation of the original, at every position.
TEST(GgufWriterTest, PermutedRowsMakeGgmlRopeEqualHfRope) {
  const int64_t heads = 3, d = 8;
  const double base = 10000;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> q(heads * d);
  for (float& x : q) x = u(rng);
  for (int pos : {0, 1, 5, 1000}) {
    std::vector<float> hf = q, ggml = PermuteRowsForGgmlRope(q, heads, 1);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < d / 2; ++i) {
        const double theta = pos * std::pow(base, -2.0 * i / d), c = std::cos(theta), s = std::sin(theta);
        float* a = &hf[h * d];  // rotate half: (i, i + d/2)
        const float x1 = a[i], x2 = a[i + d / 2];
        a[i] = x1 * c - x2 * s, a[i + d / 2] = x2 * c + x1 * s;
        float* b = &ggml[h * d];  // adjacent pairs: (2i, 2i + 1)
        const float y1 = b[2 * i], y2 = b[2 * i + 1];
        b[2 * i] = y1 * c - y2 * s, b[2 * i + 1] = y2 * c + y1 * s;
      }
    }
    const std::vector<float> want = PermuteRowsForGgmlRope(hf, heads, 1);
    for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(ggml[i], want[i], 1e-5) << "pos " << pos << " row " << i;
    if (pos > 0) EXPECT_NE(ggml, PermuteRowsForGgmlRope(q, heads, 1)) << "the rotation did something";
  }
}

class HfToGgufTest : public ::testing::Test {
 protected:
  std::string Dir(const std::string& name) {
    return (std::filesystem::path(::testing::TempDir()) / name).string();
  }
};

TEST_F(HfToGgufTest, WritesLlamaMetadataAndTensors) {
  const std::string dir = Dir("tiny_llama");
  engine::TinyModelOptions o;  // hidden 64, 2 layers, 4 heads / 2 KV heads, untied
  ASSERT_TRUE(engine::WriteTinyModel(dir, o).ok());
  absl::StatusOr<GgufWriter> g = HfFolderToGguf(dir, {.matrix_type = GgmlType::kF32});
  ASSERT_TRUE(g.ok()) << g.status();
  const std::string bytes = Serialize(*g);
  const Parsed p = Parse(bytes);
  const std::map<std::string, Value> kv = p.Map();
  absl::StatusOr<engine::ModelFiles> files = engine::ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok());
  const engine::ModelConfig& c = files->config();
  EXPECT_EQ(std::get<std::string>(kv.at("general.architecture")), "llama");
  EXPECT_EQ(std::get<uint32_t>(kv.at("llama.block_count")), 2u);
  EXPECT_EQ(std::get<uint32_t>(kv.at("llama.embedding_length")), 64u);
  EXPECT_EQ(std::get<uint32_t>(kv.at("llama.feed_forward_length")), 128u);
  EXPECT_EQ(std::get<uint32_t>(kv.at("llama.attention.head_count")), 4u);
  EXPECT_EQ(std::get<uint32_t>(kv.at("llama.attention.head_count_kv")), 2u);
  EXPECT_EQ(std::get<uint32_t>(kv.at("llama.rope.dimension_count")), 16u);
  EXPECT_EQ(std::get<float>(kv.at("llama.rope.freq_base")), 10000.0f);
  EXPECT_EQ(std::get<float>(kv.at("llama.attention.layer_norm_rms_epsilon")), static_cast<float>(c.rms_norm_eps));
  EXPECT_EQ(std::get<std::string>(kv.at("tokenizer.ggml.model")), "gpt2");
  EXPECT_EQ(std::get<std::string>(kv.at("tokenizer.ggml.pre")), "gpt-2");
  const auto& tokens = std::get<std::vector<std::string>>(kv.at("tokenizer.ggml.tokens"));
  EXPECT_EQ(static_cast<int64_t>(tokens.size()), c.vocab_size);
  EXPECT_EQ(tokens[*c.bos_token_id], "<|begin_of_text|>");
  EXPECT_EQ(std::get<std::vector<int32_t>>(kv.at("tokenizer.ggml.token_type"))[*c.bos_token_id], 3);
  // The merges, in rank order, exactly as tokenizer.json lists them.
  std::ifstream in(dir + "/tokenizer.json");
  const nlohmann::json tok = nlohmann::json::parse(in);
  const auto& merges = std::get<std::vector<std::string>>(kv.at("tokenizer.ggml.merges"));
  ASSERT_EQ(merges.size(), tok["model"]["merges"].size());
  ASSERT_FALSE(merges.empty());
  for (size_t i = 0; i < merges.size(); ++i) EXPECT_EQ(merges[i], tok["model"]["merges"][i].get<std::string>());
  EXPECT_EQ(tokens[tok["model"]["vocab"].begin().value().get<int64_t>()], tok["model"]["vocab"].begin().key());
  EXPECT_FALSE(kv.count("llama.attention.key_length")) << "head_dim = hidden / heads";

  std::map<std::string, TensorInfo> t;
  for (const TensorInfo& i : p.tensors) t[i.name] = i;
  EXPECT_EQ(t.size(), 2u * 9 + 3);  // 9 per layer + token_embd, output_norm, output
  EXPECT_THAT(t.at("token_embd.weight").ne, ElementsAre(64u, static_cast<uint64_t>(c.vocab_size)));
  EXPECT_THAT(t.at("blk.1.attn_k.weight").ne, ElementsAre(64u, 32u));
  EXPECT_THAT(t.at("blk.0.ffn_down.weight").ne, ElementsAre(128u, 64u));
  EXPECT_THAT(t.at("blk.0.attn_norm.weight").ne, ElementsAre(64u));
  for (const auto& [name, info] : t) EXPECT_EQ(info.offset % 32, 0u) << name;
  // The q rows are HF's q_proj rows, permuted; v is copied as is.
  absl::StatusOr<std::vector<float>> wq = files->LoadF32("model.layers.1.self_attn.q_proj.weight", {64, 64});
  ASSERT_TRUE(wq.ok());
  const std::vector<float> want = PermuteRowsForGgmlRope(*wq, 4, 64);
  std::vector<float> got(want.size());
  std::memcpy(got.data(), bytes.data() + p.data_start + t.at("blk.1.attn_q.weight").offset, got.size() * 4);
  EXPECT_EQ(got, want);
  EXPECT_NE(got, *wq);
}

TEST_F(HfToGgufTest, F16MatricesF32NormsTiedEmbeddingsHaveNoOutput) {
  const std::string dir = Dir("tiny_tied");
  engine::TinyModelOptions o;
  o.tie_word_embeddings = true;
  ASSERT_TRUE(engine::WriteTinyModel(dir, o).ok());
  absl::StatusOr<GgufWriter> g = HfFolderToGguf(dir, {.matrix_type = GgmlType::kF16});
  ASSERT_TRUE(g.ok()) << g.status();
  const Parsed p = Parse(Serialize(*g));
  std::map<std::string, TensorInfo> t;
  for (const TensorInfo& i : p.tensors) t[i.name] = i;
  EXPECT_FALSE(t.count("output.weight"));
  EXPECT_EQ(t.at("token_embd.weight").type, 1u);
  EXPECT_EQ(t.at("blk.0.ffn_gate.weight").type, 1u);
  EXPECT_EQ(t.at("blk.0.ffn_norm.weight").type, 0u);
  EXPECT_EQ(t.at("output_norm.weight").type, 0u);
  EXPECT_EQ(std::get<uint32_t>(p.Map().at("general.file_type")), 1u);
}

TEST_F(HfToGgufTest, RefusesWhatItDoesNotSupport) {
  auto refusal = [&](const std::string& name, engine::TinyModelOptions o) {
    const std::string dir = Dir(name);
    EXPECT_TRUE(engine::WriteTinyModel(dir, o).ok());
    absl::StatusOr<GgufWriter> g = HfFolderToGguf(dir, {});
    EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition) << g.status();
    return std::string(g.status().message());
  };
  engine::TinyModelOptions bias;
  bias.attention_bias = true;
  EXPECT_THAT(refusal("bias", bias), HasSubstr("attention_bias"));
  engine::TinyModelOptions mlp_bias;
  mlp_bias.mlp_bias = true;
  EXPECT_THAT(refusal("mlp_bias", mlp_bias), HasSubstr("mlp_bias"));
  engine::TinyModelOptions qwen;
  qwen.model_type = "qwen2";
  EXPECT_THAT(refusal("qwen2", qwen), HasSubstr("model_type \"qwen2\""));
  engine::TinyModelOptions mistral;
  mistral.model_type = "mistral";
  mistral.sliding_window = 64;
  EXPECT_THAT(refusal("mistral", mistral), HasSubstr("not supported"));

  // A tokenizer the engine reads but llama.cpp's "gpt-2" pre-tokenizer would not match.
  const std::string dir = Dir("prefix_space");
  ASSERT_TRUE(engine::WriteTinyModel(dir, {}).ok());
  std::ifstream in(dir + "/tokenizer.json");
  nlohmann::json tok = nlohmann::json::parse(in);
  in.close();
  tok["pre_tokenizer"]["add_prefix_space"] = true;
  std::ofstream(dir + "/tokenizer.json") << tok.dump();
  absl::StatusOr<GgufWriter> g = HfFolderToGguf(dir, {});
  EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition) << g.status();
  EXPECT_THAT(g.status().message(), HasSubstr("pre-tokenizer"));
}

}  // namespace
}  // namespace blockserve::bench
