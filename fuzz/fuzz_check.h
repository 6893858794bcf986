// FUZZ_CHECK: the invariant check of the fuzz targets. Not assert(): that vanishes under
// NDEBUG (-c opt), and a fuzz target's invariants must hold in every build. A failed
// check prints what failed and aborts, which libFuzzer reports as a crash (and saves the
// input) and the replay test reports as a failed test.
#ifndef BLOCKSERVE_FUZZ_FUZZ_CHECK_H_
#define BLOCKSERVE_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

#endif  // BLOCKSERVE_FUZZ_FUZZ_CHECK_H_
