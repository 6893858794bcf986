#include "engine/thread_pool.h"

namespace blockserve::engine {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

// Takes indices until none are left; called with mu_ held, returns with it held.
void ThreadPool::Drain() {
  while (next_ < n_) {
    const int64_t i = next_++;
    mu_.unlock();
    (*fn_)(i);
    mu_.lock();
    ++finished_;
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    ++busy_workers_;
    Drain();
    --busy_workers_;
    done_cv_.notify_all();
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  fn_ = &fn;
  n_ = n, next_ = 0, finished_ = 0;
  ++generation_;
  work_cv_.notify_all();
  Drain();
  // Wait for the last index to finish and for every worker to leave Drain, so the next
  // job cannot be confused with this one.
  done_cv_.wait(lock, [&] { return finished_ == n_ && busy_workers_ == 0; });
  fn_ = nullptr;
}

}  // namespace blockserve::engine
