// How the CPU hot loops get the machine's vector units in one portable binary.
//
// BLOCKSERVE_MULTIVERSION compiles a function three times on x86-64 with gcc: for
// AVX-512 (x86-64-v4), for AVX2+FMA (x86-64-v3) and for the baseline ISA; the dynamic
// loader picks the clone by the CPU's features when the library is loaded. Not under
// ThreadSanitizer: gcc instruments the ifunc resolver that picks the clone, and the
// loader runs it while relocating the library, before the TSan runtime is up (every
// test linking the kernels died with SIGSEGV before main under --config=tsan).
//
// BLOCKSERVE_INLINE forces a helper inline, so that each clone gets its own copy of it,
// built for the clone's ISA.
#ifndef BLOCKSERVE_ENGINE_SIMD_H_
#define BLOCKSERVE_ENGINE_SIMD_H_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_THREAD__)
#define BLOCKSERVE_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BLOCKSERVE_MULTIVERSION
#endif

#define BLOCKSERVE_INLINE inline __attribute__((always_inline))

#endif  // BLOCKSERVE_ENGINE_SIMD_H_
