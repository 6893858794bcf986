#include "common/grpc_status.h"

#include <gtest/gtest.h>

namespace blockserve {
namespace {

TEST(GrpcStatusTest, CodesAndMessagesSurviveTheRoundTrip) {
  for (const absl::Status& s :
       {absl::InvalidArgumentError("empty query"), absl::NotFoundError("passage p7"),
        absl::ResourceExhaustedError("full"), absl::UnavailableError("decoder down"),
        absl::DeadlineExceededError("late"), absl::CancelledError("bye")}) {
    grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), static_cast<int>(s.code()));
    EXPECT_EQ(g.error_message(), s.message());
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(ToGrpcStatus(absl::InvalidArgumentError("x")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace blockserve
