"""blockserve_fuzzer: one fuzz target (an LLVMFuzzerTestOneInput in `srcs`), three rules.

  <name>_lib          the target itself (alwayslink, so the entry point is always linked)
  <name>              the libFuzzer binary: clang only (-fsanitize=fuzzer links libFuzzer's
                      main), so tagged manual; scripts/fuzz.sh builds it with --config=fuzz
                      in an output base of its own
  <name>_replay_test  the same target under fuzz/replay_main.cc, run on every file of
                      fuzz/corpus/<name>/ once: part of `bazel test //...` with gcc, so the
                      corpus (seeds and every crash found) is a regression test everywhere
"""

def blockserve_fuzzer(name, srcs, deps):
    native.cc_library(
        name = name + "_lib",
        srcs = srcs,
        deps = deps + [":fuzz_check"],
        alwayslink = True,
        testonly = True,
    )
    native.cc_binary(
        name = name,
        deps = [":" + name + "_lib"],
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
        testonly = True,
    )
    native.cc_test(
        name = name + "_replay_test",
        size = "small",
        args = ["fuzz/corpus/" + name],
        data = native.glob(["corpus/" + name + "/**"]),
        deps = [":" + name + "_lib", ":replay_main"],
    )
