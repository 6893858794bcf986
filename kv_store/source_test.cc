#include "kv_store/source.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace blockserve::kv_store {
namespace {

TEST(SourceValueTest, RoundTrips) {
  const std::vector<int32_t> tokens = {5, 6, 7, 3142, 0};
  absl::StatusOr<std::vector<int32_t>> back = DecodeSourceValue(EncodeSourceValue(tokens));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, tokens);
}

// Zero tokens decode to an empty vector, whose data() is null: the copy must be skipped,
// not done with 0 bytes (UBSan's nonnull-attribute check fails this test under
// --config=asan without it; found by fuzz/source_value_fuzzer).
TEST(SourceValueTest, ZeroTokensRoundTrip) {
  const std::string value = EncodeSourceValue({});
  EXPECT_EQ(value.size(), 24u);  // magic, count, zero, checksum
  absl::StatusOr<std::vector<int32_t>> back = DecodeSourceValue(value);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->empty());
}

TEST(SourceValueTest, DamagedValuesAreInvalidArgument) {
  const std::string value = EncodeSourceValue({1, 2, 3});
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeSourceValue("").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeSourceValue(std::string(40, 'x')).status()));
  for (size_t cut = 0; cut < value.size(); ++cut) {
    EXPECT_TRUE(absl::IsInvalidArgument(DecodeSourceValue(value.substr(0, cut)).status()))
        << "cut to " << cut;
  }
  for (size_t i = 0; i < value.size(); ++i) {
    std::string flipped = value;
    flipped[i] ^= 0x01;
    EXPECT_TRUE(absl::IsInvalidArgument(DecodeSourceValue(flipped).status())) << "byte " << i;
  }
}

}  // namespace
}  // namespace blockserve::kv_store
