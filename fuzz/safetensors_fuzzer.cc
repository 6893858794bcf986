// Fuzz target: safetensors files (engine/safetensors.h): the length prefix, the JSON
// header and its offsets into the data buffer. SafetensorsFile::Open takes a path and
// maps the file, so each input is written to a scratch file and opened from there: the
// fuzzed path is the real one, mapping included.
//
// Invariants: a failure is InvalidArgument (Open's contract for malformed content); an
// opened file's tensors are findable by their sorted, distinct names, hold exactly
// num_elements x dtype size bytes, and survive a round trip: written again with
// WriteSafetensors (same dtypes, shapes, metadata, values) and reopened, every tensor
// reads back the same (bitwise, any NaN matching any NaN).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/safetensors.h"
#include "fuzz/fuzz_check.h"

namespace blockserve::engine {
namespace {

// A scratch folder for this process (Bazel's TEST_TMPDIR when there is one).
const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path* const dir = [] {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string pattern =
        std::string(base != nullptr ? base : "/tmp") + "/safetensors_fuzzer.XXXXXX";
    FUZZ_CHECK(::mkdtemp(pattern.data()) != nullptr);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(ScratchDir(), ignored);
    });
    return new std::filesystem::path(pattern);
  }();
  return *dir;
}

void WriteFile(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(f != nullptr);
  FUZZ_CHECK(size == 0 || std::fwrite(data, 1, size, f) == size);
  FUZZ_CHECK(std::fclose(f) == 0);
}

std::vector<float> Values(const TensorView& t) {
  std::vector<float> values(static_cast<size_t>(t.num_elements()));
  ConvertToF32(t.dtype, t.data, values.size(), values.data());
  return values;
}

bool SameFloats(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (!(std::isnan(a[i]) && std::isnan(b[i]))) return false;
    } else if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

void CheckRoundTrip(const SafetensorsFile& file) {
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : file.TensorNames()) {
    // The reader takes any JSON key as a name; the writer refuses an empty one.
    if (name.empty()) return;
    const TensorView& t = *file.Find(name);
    tensors.push_back({.name = name, .dtype = t.dtype, .shape = t.shape, .values = Values(t)});
  }
  const std::filesystem::path path = ScratchDir() / "round_trip.safetensors";
  FUZZ_CHECK(WriteSafetensors(path, tensors, file.metadata()).ok());
  absl::StatusOr<SafetensorsFile> again = SafetensorsFile::Open(path);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->TensorNames() == file.TensorNames());
  FUZZ_CHECK(again->metadata() == file.metadata());
  for (const TensorToWrite& want : tensors) {
    const TensorView* got = again->Find(want.name);
    FUZZ_CHECK(got != nullptr);
    FUZZ_CHECK(got->dtype == want.dtype);
    FUZZ_CHECK(got->shape == want.shape);
    FUZZ_CHECK(SameFloats(Values(*got), want.values));
  }
}

}  // namespace
}  // namespace blockserve::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blockserve::engine;
  const std::filesystem::path path = ScratchDir() / "input.safetensors";
  WriteFile(path, data, size);
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  if (!file.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(file.status()));
    return 0;
  }
  std::vector<std::string> names = file->TensorNames();
  FUZZ_CHECK(std::is_sorted(names.begin(), names.end()));
  FUZZ_CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
  for (const std::string& name : names) {
    const TensorView* t = file->Find(name);
    FUZZ_CHECK(t != nullptr && t->name == name);
    FUZZ_CHECK(t->num_elements() >= 0);
    FUZZ_CHECK(t->nbytes == static_cast<size_t>(t->num_elements()) * DTypeSize(t->dtype));
    FUZZ_CHECK(t->nbytes <= size);
  }
  CheckRoundTrip(*file);
  return 0;
}
