// STATUS: compiled and linked in CI; never run (needs two GPUs).
#include "handoff/nccl/nccl_kv.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/cuda/cuda_util.h"

namespace blockserve::handoff {
namespace {

using engine::cuda::CudaStatus;
using engine::cuda::DeviceArray;

absl::Status NcclStatus(ncclResult_t r, std::string_view what) {
  if (r == ncclSuccess || r == ncclInProgress) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(std::string(what), ": ", ncclGetErrorString(r)));
}

#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    if (absl::Status _s = (expr); !_s.ok()) return _s; \
  } while (0)

static_assert(sizeof(ncclUniqueId) == 128, "NCCL_UNIQUE_ID_BYTES changed");

}  // namespace

struct NcclKvChannel::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  NcclKvOptions options;
  DeviceArray<float> buffer;  // [layer][K|V][rows][row] staging
  bool aborted = false;

  // Polls until `done()` or an asynchronous NCCL error or the timeout; aborts the
  // communicator on failure (it is unusable afterwards).
  template <typename Done>
  absl::Status Wait(Done done, std::string_view what) {
    const absl::Time deadline = absl::Now() + options.timeout;
    while (true) {
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm, &async) != ncclSuccess ||
          (async != ncclSuccess && async != ncclInProgress)) {
        Abort();
        return absl::UnavailableError(absl::StrCat(std::string(what), ": NCCL error ",
                                                   ncclGetErrorString(async)));
      }
      if (async == ncclSuccess && done()) return absl::OkStatus();
      if (absl::Now() > deadline) {
        Abort();
        return absl::UnavailableError(absl::StrCat(std::string(what), ": timed out after ",
                                                   absl::FormatDuration(options.timeout)));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  absl::Status WaitStream(std::string_view what) {
    cudaError_t last = cudaSuccess;
    absl::Status s = Wait(
        [&] {
          last = cudaStreamQuery(stream);
          return last != cudaErrorNotReady;
        },
        what);
    if (!s.ok()) return s;
    return CudaStatus(last, what);
  }
  void Abort() {
    if (comm != nullptr && !aborted) ncclCommAbort(comm);
    aborted = true;
  }
};

GpuCapabilities LocalGpuCapabilities() {
  GpuCapabilities caps;
  caps.gpu_count = engine::cuda::CudaDeviceCount();
  int version = 0;
  caps.nccl_available = caps.gpu_count > 0 && ncclGetVersion(&version) == ncclSuccess && version > 0;
  return caps;
}

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  return std::string(id.internal, sizeof(id.internal));
}

NcclKvChannel::NcclKvChannel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NcclKvChannel::~NcclKvChannel() {
  cudaSetDevice(impl_->options.device);
  if (impl_->comm != nullptr && !impl_->aborted) ncclCommDestroy(impl_->comm);
  if (impl_->stream != nullptr) cudaStreamDestroy(impl_->stream);
}

absl::StatusOr<std::unique_ptr<NcclKvChannel>> NcclKvChannel::Join(const std::string& unique_id,
                                                                   int nranks, int rank,
                                                                   NcclKvOptions options) {
  if (unique_id.size() != sizeof(ncclUniqueId)) {
    return absl::InvalidArgumentError(absl::StrCat("an ncclUniqueId is ", sizeof(ncclUniqueId),
                                                   " bytes, got ", unique_id.size()));
  }
  if (nranks < 2 || rank < 0 || rank >= nranks) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " of ", nranks));
  }
  const int devices = engine::cuda::CudaDeviceCount();
  if (options.device < 0 || options.device >= devices) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", options.device, " requested but ", devices, " CUDA device(s) found"));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options.device), "cudaSetDevice"));
  RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking),
                             "cudaStreamCreate"));
  ncclUniqueId id;
  std::memcpy(id.internal, unique_id.data(), sizeof(id.internal));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // calls return ncclInProgress; Wait polls, so a dead peer times out
  RETURN_IF_ERROR(NcclStatus(ncclCommInitRankConfig(&impl->comm, nranks, id, rank, &config),
                             "ncclCommInitRankConfig"));
  std::unique_ptr<NcclKvChannel> channel(new NcclKvChannel(std::move(impl)));
  Impl& i = *channel->impl_;
  RETURN_IF_ERROR(i.Wait(
      [&] {
        ncclResult_t state = ncclInProgress;
        ncclCommGetAsyncError(i.comm, &state);
        return state == ncclSuccess;
      },
      "joining the NCCL communicator"));
  return channel;
}

absl::Status NcclKvChannel::SendKv(const engine::KvCache& kv, int peer) {
  Impl& i = *impl_;
  if (kv.dtype() != engine::DType::kF32) {
    // The transfer moves fp32 rows as they are (ncclFloat32); a bf16 sequence would need
    // its own element type on both ends. Not built: NCCL runs with the CUDA engine,
    // whose KV is fp32.
    return absl::InvalidArgumentError("NCCL KV transfer carries F32 KV; this cache is BF16 "
                                      "(run the engine with --kv_dtype=f32)");
  }
  if (i.aborted) return absl::FailedPreconditionError("NCCL communicator was aborted");
  RETURN_IF_ERROR(CudaStatus(cudaSetDevice(i.options.device), "cudaSetDevice"));
  const engine::KvShape& shape = kv.shape();
  const size_t per = kv.num_tokens() * shape.row();
  RETURN_IF_ERROR(i.buffer.Reserve(2 * shape.num_layers * per));
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(i.buffer.get() + (2 * l) * per, kv.k(l),
                                               per * sizeof(float), cudaMemcpyHostToDevice,
                                               i.stream),
                               "KV upload"));
    RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(i.buffer.get() + (2 * l + 1) * per, kv.v(l),
                                               per * sizeof(float), cudaMemcpyHostToDevice,
                                               i.stream),
                               "KV upload"));
  }
  RETURN_IF_ERROR(NcclStatus(ncclGroupStart(), "ncclGroupStart"));
  for (int64_t t = 0; t < 2 * shape.num_layers; ++t) {  // layer 0 K, layer 0 V, layer 1 K...
    ncclResult_t r = ncclSend(i.buffer.get() + t * per, per, ncclFloat32, peer, i.comm, i.stream);
    if (r != ncclSuccess && r != ncclInProgress) {
      ncclGroupEnd();
      return NcclStatus(r, "ncclSend");
    }
  }
  RETURN_IF_ERROR(NcclStatus(ncclGroupEnd(), "ncclGroupEnd"));
  return i.WaitStream("sending KV over NCCL");
}

absl::Status NcclKvChannel::RecvKv(int peer, absl::Span<const int32_t> tokens,
                                   engine::KvCache* kv) {
  Impl& i = *impl_;
  if (kv->dtype() != engine::DType::kF32) {
    // The transfer moves fp32 rows as they are (ncclFloat32); a bf16 sequence would need
    // its own element type on both ends. Not built: NCCL runs with the CUDA engine,
    // whose KV is fp32.
    return absl::InvalidArgumentError("NCCL KV transfer carries F32 KV; this cache is BF16 "
                                      "(run the engine with --kv_dtype=f32)");
  }
  if (i.aborted) return absl::FailedPreconditionError("NCCL communicator was aborted");
  RETURN_IF_ERROR(CudaStatus(cudaSetDevice(i.options.device), "cudaSetDevice"));
  const engine::KvShape& shape = kv->shape();
  const size_t per = tokens.size() * shape.row();
  RETURN_IF_ERROR(i.buffer.Reserve(2 * shape.num_layers * per));
  RETURN_IF_ERROR(NcclStatus(ncclGroupStart(), "ncclGroupStart"));
  for (int64_t t = 0; t < 2 * shape.num_layers; ++t) {
    ncclResult_t r = ncclRecv(i.buffer.get() + t * per, per, ncclFloat32, peer, i.comm, i.stream);
    if (r != ncclSuccess && r != ncclInProgress) {
      ncclGroupEnd();
      return NcclStatus(r, "ncclRecv");
    }
  }
  RETURN_IF_ERROR(NcclStatus(ncclGroupEnd(), "ncclGroupEnd"));
  RETURN_IF_ERROR(i.WaitStream("receiving KV over NCCL"));
  // Stage on the host first so that a failed download leaves `kv` unchanged.
  std::vector<float> host(2 * shape.num_layers * per);
  RETURN_IF_ERROR(CudaStatus(cudaMemcpy(host.data(), i.buffer.get(), host.size() * sizeof(float),
                                        cudaMemcpyDeviceToHost),
                             "KV download"));
  const int64_t first = kv->Append(tokens);
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    std::memcpy(kv->k(l) + first * shape.row(), host.data() + (2 * l) * per, per * sizeof(float));
    std::memcpy(kv->v(l) + first * shape.row(), host.data() + (2 * l + 1) * per,
                per * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace blockserve::handoff
