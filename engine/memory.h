// Process-wide allocator settings for programs that move KV blocks.
#ifndef BLOCKSERVE_ENGINE_MEMORY_H_
#define BLOCKSERVE_ENGINE_MEMORY_H_

namespace blockserve {

// Serves allocations up to 32 MiB (glibc's maximum) from the heap and keeps freed
// heap memory instead of returning it to the kernel. KV blocks are per-layer buffers
// of hundreds of KiB to a few MiB, allocated and freed for every request; by default
// glibc maps each one fresh, and faulting its pages in cost more than the copy itself
// (a 39 MB f32 block decoded at 1.9 GB/s instead of 5.4 GB/s; bench/kv_store_bench).
// The price: a process keeps its peak heap. Call once at the start of main().
void KeepFreedMemoryForReuse();

}  // namespace blockserve

#endif  // BLOCKSERVE_ENGINE_MEMORY_H_
