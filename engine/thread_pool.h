// A fixed set of worker threads for the CPU backend's data-parallel loops. Workers
// sleep on a condition variable between jobs (no spinning), and the calling thread
// works too, so a pool of n threads uses n cores. One job at a time per pool.
#ifndef BLOCKSERVE_ENGINE_THREAD_POOL_H_
#define BLOCKSERVE_ENGINE_THREAD_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace blockserve::engine {

class ThreadPool {
 public:
  // `num_threads` <= 0: one per hardware thread.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(i) for every i in [0, n), spread over the threads, and returns when all
  // calls are done. Indices are handed out dynamically, so uneven work balances.
  void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void WorkerLoop();
  void Drain();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, next_ = 0, finished_ = 0;
  uint64_t generation_ = 0;
  int busy_workers_ = 0;
  bool stop_ = false;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_THREAD_POOL_H_
