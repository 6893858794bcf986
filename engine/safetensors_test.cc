#include "engine/safetensors.h"

#include <stdlib.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace blockserve::engine {
namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/safetensors_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string PathFor(const std::string& name) const {
    return dir_ + "/" + name;
  }

  std::string WriteBytes(const std::string& name,
                         const std::vector<uint8_t>& bytes) const {
    const std::string path = PathFor(name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  static std::vector<uint8_t> ReadBytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }

  std::string dir_;
};

// Builds a safetensors byte image from its parts exactly as the format
// describes it: u64 LE length, header bytes, data.
std::vector<uint8_t> MakeFile(const std::string& header,
                              const std::vector<uint8_t>& data) {
  std::vector<uint8_t> bytes;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) {
    bytes.push_back(static_cast<uint8_t>(n >> (8 * i)));
  }
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

std::vector<float> ReadAsF32(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.num_elements()));
  ConvertToF32(view.dtype, view.data, out.size(), out.data());
  return out;
}

float Rounded(DType dtype, float v) {
  switch (dtype) {
    case DType::kF32:
      return v;
    case DType::kF16:
      return F16ToF32(F32ToF16(v));
    case DType::kBF16:
      return BF16ToF32(F32ToBF16(v));
  }
  return v;
}

TEST_F(SafetensorsTest, WriteThenOpenRoundTripsEveryDType) {
  std::vector<TensorToWrite> tensors;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::vector<float> values;
    for (int i = 0; i < 2 * 3 * 5; ++i) {
      values.push_back(0.37f * static_cast<float>(i) - 4.1f);
    }
    tensors.push_back({"t." + std::string(DTypeName(dtype)), dtype, {2, 3, 5},
                       values});
  }
  tensors.push_back({"odd_f16", DType::kF16, {3}, {1, 2, 3}});
  tensors.push_back({"scalar", DType::kF32, {}, {42.5f}});
  tensors.push_back({"empty", DType::kBF16, {0, 7}, {}});
  const std::string path = PathFor("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());

  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_EQ(file->TensorNames(),
            (std::vector<std::string>{"empty", "odd_f16", "scalar", "t.BF16",
                                      "t.F16", "t.F32"}));
  for (const TensorToWrite& t : tensors) {
    const TensorView* view = file->Find(t.name);
    ASSERT_NE(view, nullptr) << t.name;
    EXPECT_EQ(view->name, t.name);
    EXPECT_EQ(view->dtype, t.dtype) << t.name;
    EXPECT_EQ(view->shape, t.shape) << t.name;
    EXPECT_EQ(view->nbytes, t.values.size() * DTypeSize(t.dtype)) << t.name;
    // Every tensor is aligned to its element size in the file.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data) % DTypeSize(t.dtype), 0u)
        << t.name;
    std::vector<float> expected;
    for (float v : t.values) expected.push_back(Rounded(t.dtype, v));
    EXPECT_EQ(ReadAsF32(*view), expected) << t.name;
  }
  EXPECT_EQ(file->Find("missing"), nullptr);
}

TEST_F(SafetensorsTest, WriterProducesTheBytesTheFormatPrescribes) {
  const std::string path = PathFor("spec.safetensors");
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"w", DType::kF16, {3}, {1.0f, -2.5f, 0.5f}},
                                {"b", DType::kF32, {2}, {1.0f, -2.0f}}},
                               {{"format", "pt"}})
                  .ok());
  // Header: compact JSON, metadata first, then tensors in data order
  // (4-byte elements before 2-byte ones), padded with spaces to 8 bytes.
  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("w":{"dtype":"F16","shape":[3],"data_offsets":[8,14]}})";
  ASSERT_EQ(header.size(), 139u);
  header += "     ";  // 139 -> 144
  std::vector<uint8_t> expected = {144, 0, 0, 0, 0, 0, 0, 0};
  expected.insert(expected.end(), header.begin(), header.end());
  const std::vector<uint8_t> data = {
      0x00, 0x00, 0x80, 0x3f,  // f32 1.0
      0x00, 0x00, 0x00, 0xc0,  // f32 -2.0
      0x00, 0x3c,              // f16 1.0
      0x00, 0xc1,              // f16 -2.5
      0x00, 0x38,              // f16 0.5
  };
  expected.insert(expected.end(), data.begin(), data.end());
  EXPECT_EQ(ReadBytes(path), expected);
}

TEST_F(SafetensorsTest, WriterOmitsEmptyMetadataAndPadsEvenShortHeaders) {
  const std::string path = PathFor("small.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"x", DType::kBF16, {1}, {1.0f}}}).ok());
  std::string header =
      R"({"x":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<uint8_t> expected =
      MakeFile(header, {0x80, 0x3f});  // bf16 1.0 = 0x3f80
  EXPECT_EQ(ReadBytes(path), expected);
}

TEST_F(SafetensorsTest, OpensAHandBuiltFileWithUnusualButValidLayout) {
  // Unpadded header with whitespace, tensors stored in reverse order, a
  // scalar, an empty tensor and a bf16 tensor.
  const std::string header = R"( { "z" : {"dtype":"F32","shape":[],"data_offsets":[4,8]},
    "a" : {"data_offsets":[0,4],"shape":[1,2],"dtype":"BF16"},
    "e" : {"dtype":"F16","shape":[2,0],"data_offsets":[8,8]},
    "__metadata__": {"k": "v", "n": "2"} } )";
  const std::vector<uint8_t> data = {0x80, 0x3f, 0x20, 0xc0,   // bf16 1, -2.5
                                     0x00, 0x00, 0x28, 0x42};  // f32 42
  const std::string path = WriteBytes("hand.safetensors", MakeFile(header, data));
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->TensorNames(), (std::vector<std::string>{"a", "e", "z"}));
  EXPECT_EQ(file->metadata().at("n"), "2");
  const TensorView* a = file->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kBF16);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(ReadAsF32(*a), (std::vector<float>{1.0f, -2.5f}));
  const TensorView* z = file->Find("z");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->num_elements(), 1);
  EXPECT_EQ(ReadAsF32(*z), (std::vector<float>{42.0f}));
  const TensorView* e = file->Find("e");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->num_elements(), 0);
  EXPECT_EQ(e->nbytes, 0u);
}

TEST_F(SafetensorsTest, MovedFileKeepsViewsValid) {
  const std::string path = PathFor("m.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"x", DType::kF32, {2}, {3, 4}}}).ok());
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* before = file->Find("x");
  SafetensorsFile moved = std::move(*file);
  SafetensorsFile assigned = std::move(moved);
  EXPECT_EQ(assigned.Find("x"), before);
  EXPECT_EQ(ReadAsF32(*before), (std::vector<float>{3, 4}));
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  absl::StatusOr<SafetensorsFile> file =
      SafetensorsFile::Open(PathFor("nope.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(file.status().message()).find("nope.safetensors"),
            std::string::npos);
}

TEST_F(SafetensorsTest, EveryTruncationIsRejectedWithoutCrashing) {
  const std::string path = PathFor("full.safetensors");
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"a", DType::kF32, {2, 2}, {1, 2, 3, 4}},
                                {"b", DType::kF16, {3}, {5, 6, 7}}},
                               {{"format", "pt"}})
                  .ok());
  const std::vector<uint8_t> full = ReadBytes(path);
  ASSERT_TRUE(SafetensorsFile::Open(path).ok());
  for (size_t len = 0; len < full.size(); ++len) {
    const std::string cut = WriteBytes(
        "cut.safetensors",
        std::vector<uint8_t>(full.begin(), full.begin() + len));
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(cut);
    ASSERT_FALSE(file.ok()) << "truncated to " << len << " bytes";
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << len;
    EXPECT_NE(std::string(file.status().message()).find("cut.safetensors"),
              std::string::npos);
  }
}

TEST_F(SafetensorsTest, AbsurdHeaderLengthsAreRejected) {
  for (uint64_t n : {uint64_t{9}, uint64_t{1} << 40, ~uint64_t{0},
                     uint64_t{100'000'001}}) {
    std::vector<uint8_t> bytes = MakeFile("{}", {});
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(n >> (8 * i));
    const std::string path = WriteBytes("len.safetensors", bytes);
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok()) << n;
    EXPECT_NE(std::string(file.status().message()).find("header length"),
              std::string::npos)
        << file.status();
  }
}

// A "shape" nested a million deep: the error message's dump() of it recursed once per
// level and overflowed the stack (SIGSEGV). Refused before parsing.
TEST_F(SafetensorsTest, DeeplyNestedHeaderIsInvalidArgumentNotAStackOverflow) {
  const int depth = 1'000'000;
  const std::string header = R"({"t": {"dtype": "F32", "shape": )" +
                             std::string(depth, '[') + std::string(depth, ']') +
                             R"(, "data_offsets": [0, 0]}})";
  const std::string path = WriteBytes("deep.safetensors", MakeFile(header, {}));
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument)
      << file.status();
  EXPECT_NE(std::string(file.status().message()).find("nested deeper than"),
            std::string::npos)
      << file.status();
}

TEST_F(SafetensorsTest, EmptyHeaderObjectIsAValidFileWithNoTensors) {
  const std::string path = WriteBytes("e.safetensors", MakeFile("{}", {}));
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->TensorNames().empty());
}

TEST_F(SafetensorsTest, MalformedHeadersAreRejectedWithDescriptiveErrors) {
  struct Case {
    const char* header;
    const char* expected_in_message;
  };
  // Each header is paired with a 16-byte data buffer.
  const Case cases[] = {
      {"not json", "not valid JSON"},
      {"", "not valid JSON"},
      {"{\"a\": {", "not valid JSON"},
      {"[1, 2]", "JSON object, found array"},
      {"\"text\"", "JSON object, found string"},
      {R"({"a": 5})", "\"a\": expected an object"},
      {R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", "\"dtype\""},
      {R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", "\"shape\""},
      {R"({"a": {"dtype": "F32", "shape": [1]}})", "\"data_offsets\""},
      {R"({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})",
       "tensor \"ids\": unsupported dtype \"I64\""},
      {R"({"a": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})",
       "\"dtype\" to be a string"},
      {R"({"a": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})",
       "\"shape\" to be an array"},
      {R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
       "non-negative integer dims"},
      {R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 4]}})",
       "non-negative integer dims"},
      {R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904], "data_offsets": [0, 4]}})",
       "larger than the file"},
      {R"({"a": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 4]}})",
       "non-negative integer dims"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})",
       "non-negative integers"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})",
       "[begin, end]"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": "0-4"}})",
       "[begin, end]"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})",
       "begin <= end <= 16"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [16, 20]}})",
       "found [16, 20]"},
      {R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
       "needs 12 bytes"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
       "\"a\" and \"b\" overlap"},
      {R"({"__metadata__": [1]})", "\"__metadata__\" to be an object"},
      {R"({"__metadata__": {"n": 1}})", "value of \"n\" to be a string"},
  };
  for (const Case& c : cases) {
    const std::string path = WriteBytes(
        "bad.safetensors", MakeFile(c.header, std::vector<uint8_t>(16, 0)));
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok()) << c.header;
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument)
        << c.header;
    const std::string message(file.status().message());
    EXPECT_NE(message.find(c.expected_in_message), std::string::npos)
        << "header: " << c.header << "\nmessage: " << message;
    EXPECT_NE(message.find("bad.safetensors"), std::string::npos) << message;
  }
}

// Random garbage and random mutations of a valid file: Open may fail or
// succeed, but must not crash, and every view it returns lies in the file.
TEST_F(SafetensorsTest, RandomBytesAndMutationsNeverCrash) {
  const std::string valid_path = PathFor("valid.safetensors");
  ASSERT_TRUE(WriteSafetensors(valid_path,
                               {{"a", DType::kF32, {2, 2}, {1, 2, 3, 4}},
                                {"b", DType::kBF16, {3}, {5, 6, 7}}},
                               {{"k", "v"}})
                  .ok());
  const std::vector<uint8_t> valid = ReadBytes(valid_path);
  std::mt19937 rng(1234);
  int opened = 0;
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::vector<uint8_t> bytes;
    if (iteration % 4 == 0) {
      bytes.resize(rng() % 64);
      for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    } else {
      bytes = valid;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < flips; ++i) {
        bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
      }
    }
    const std::string path = WriteBytes("fuzz.safetensors", bytes);
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    if (!file.ok()) continue;
    ++opened;
    for (const std::string& name : file->TensorNames()) {
      const TensorView* view = file->Find(name);
      ASSERT_NE(view, nullptr);
      EXPECT_EQ(view->nbytes, static_cast<size_t>(view->num_elements()) *
                                  DTypeSize(view->dtype));
      EXPECT_LE(view->nbytes, bytes.size());
      std::vector<float> values = ReadAsF32(*view);  // touches every byte
    }
  }
  // Mutations of data bytes leave the file valid, so some must open.
  EXPECT_GT(opened, 0);
}

TEST_F(SafetensorsTest, WriterRejectsInconsistentTensors) {
  const std::string path = PathFor("w.safetensors");
  struct Case {
    std::vector<TensorToWrite> tensors;
    const char* expected_in_message;
  };
  const std::vector<Case> cases = {
      {{{"a", DType::kF32, {2, 2}, {1, 2, 3}}},
       "shape [2, 2] has 4 elements, found 3 values"},
      {{{"a", DType::kF32, {1}, {1}}, {"a", DType::kF16, {1}, {2}}},
       "duplicate"},
      {{{"a", DType::kF32, {-1}, {}}}, "negative dim"},
      {{{"", DType::kF32, {1}, {1}}}, "invalid tensor name"},
      {{{"__metadata__", DType::kF32, {1}, {1}}}, "invalid tensor name"},
      {{{"bad\xff", DType::kF32, {1}, {1}}}, "UTF-8"},
  };
  for (const Case& c : cases) {
    absl::Status status = WriteSafetensors(path, c.tensors);
    ASSERT_FALSE(status.ok()) << c.expected_in_message;
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(status.message()).find(c.expected_in_message),
              std::string::npos)
        << status;
  }
  absl::Status status = WriteSafetensors(
      dir_ + "/no/such/dir/x.safetensors", {{"a", DType::kF32, {1}, {1}}});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
}

}  // namespace
}  // namespace blockserve::engine
