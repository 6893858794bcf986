#include "kv_store/catalog_value.h"

#include "gtest/gtest.h"

namespace blockserve::kv_store {
namespace {

BlockKey Key(uint8_t fill) {
  BlockKey k;
  k.bytes.fill(fill);
  return k;
}

TEST(CatalogValueTest, RoundTripsForItsOwnPassageId) {
  absl::StatusOr<BlockKey> key = DecodeCatalogValue(EncodeCatalogValue("elbe", Key(7)), "elbe");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, Key(7));
}

TEST(CatalogValueTest, AnotherPassagesEntryUnderThisIdIsRejected) {
  // What a swapped pointer looks like: B's entry stored under A's id.
  const absl::Status s = DecodeCatalogValue(EncodeCatalogValue("rhine", Key(9)), "elbe").status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("rhine"), std::string_view::npos) << s;
}

TEST(CatalogValueTest, BareKeysGarbageAndFlippedBytesAreRejected) {
  EXPECT_FALSE(DecodeCatalogValue(Key(7).Hex(), "elbe").ok()) << "a bare key (the old format)";
  EXPECT_FALSE(DecodeCatalogValue("", "elbe").ok());
  EXPECT_FALSE(DecodeCatalogValue(std::string(64, 'x'), "elbe").ok());
  std::string value = EncodeCatalogValue("elbe", Key(7));
  for (size_t i = 8; i < value.size(); ++i) {
    std::string flipped = value;
    flipped[i] ^= 0x10;
    EXPECT_FALSE(DecodeCatalogValue(flipped, "elbe").ok()) << "byte " << i;
  }
  EXPECT_FALSE(DecodeCatalogValue(value.substr(0, value.size() - 1), "elbe").ok());
}

}  // namespace
}  // namespace blockserve::kv_store
