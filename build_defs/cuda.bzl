"""CUDA in Bazel 4 without rules_cuda: nvcc runs in a genrule per source file.

Every source that includes a CUDA, cuBLAS or NCCL header (device .cu files AND host .cc
files) is compiled by nvcc here, not by Bazel's C++ rules: Bazel's header-inclusion check
rejects headers outside the execution root and the toolchain's built-in directories
(/usr/local/cuda/include is neither), and without a repository rule (no WORKSPACE
change, no network) there is no way to declare them. The objects are then wrapped in a
cc_library, so the rest of the tree depends on ordinary targets. Public headers of these
libraries should not include CUDA headers, so that g++-compiled dependents never see them.

The CUDA install is `--define=CUDA_PATH=...` (default /usr/local/cuda, set in .bazelrc),
read through the `$(CUDA_PATH)` make variable, so

    bazel build --define=CUDA_PATH=/opt/cuda-13.0 //engine/cuda/...

builds against another install without editing any file.

Device code is compiled for sm_90 (H100/H200) as SASS plus compute_80 PTX, which the
driver JIT-compiles on any GPU of compute capability >= 8.0: one binary runs natively on
Hopper and still runs on Ampere and newer.
"""

CUDA_GENCODE = [
    "-gencode=arch=compute_90,code=sm_90",
    "-gencode=arch=compute_80,code=compute_80",
]

def _nvcc_object(name, src, deps_files, testonly, tags):
    stem = src.replace("/", "_").replace(".", "_")
    obj = "_cuda_objs/%s/%s.pic.o" % (name, stem)
    native.genrule(
        name = "%s_%s_nvcc" % (name, stem),
        srcs = [src] + deps_files,
        outs = [obj],
        cmd = " ".join([
            "$(CUDA_PATH)/bin/nvcc",
            "-std=c++20",
            "-O2",
            "--expt-relaxed-constexpr",
            "-Xcompiler=-fPIC,-Wall",
            "-I.",
            "-I$(GENDIR)",
        ] + CUDA_GENCODE + [
            "-c $(location %s)" % src,
            "-o $@",
        ]),
        message = "nvcc %s" % src,
        testonly = testonly,
        tags = tags,
    )
    return obj

def cuda_library(name, srcs, hdrs = [], srcs_deps = [], deps = [], **kwargs):
    """A cc_library whose sources (.cu and .cc alike) are compiled by nvcc.

    Args:
      name: the cc_library's name.
      srcs: .cu / .cc files; each becomes one position-independent object.
      hdrs: this library's headers (visible to dependents, and inputs of every nvcc step).
      srcs_deps: other headers or generated files the sources include (files or
        filegroups from other targets), listed so that a change to them recompiles;
        nvcc finds workspace headers through -I. and generated ones through -I$(GENDIR).
      deps: cc deps (linked in; their headers are not seen by nvcc unless in srcs_deps).
      **kwargs: passed to the cc_library (visibility, tags, testonly...).
    """
    testonly = kwargs.get("testonly", False)
    tags = kwargs.get("tags", [])
    objs = [_nvcc_object(name, src, hdrs + srcs_deps, testonly, tags) for src in srcs]
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["//third_party/system:cuda_runtime"],
        # Kernels and gtest registrations are reached only through static initializers
        # or stubs inside these objects: keep every object in the link.
        alwayslink = True,
        **kwargs
    )

def cuda_test(name, srcs, srcs_deps = [], deps = [], tags = [], **kwargs):
    """A cc_test whose sources are compiled by nvcc (tests that call CUDA directly).

    Tagged "manual" and "gpu" on top of `tags`: `bazel test //...` never runs it (CI has
    no GPU); scripts/gpu_test.sh builds and runs these on a machine with one.
    """
    all_tags = tags + ["manual", "gpu"]
    cuda_library(
        name = name + "_objs",
        srcs = srcs,
        srcs_deps = srcs_deps,
        deps = deps,
        testonly = True,
        tags = all_tags,
    )
    native.cc_test(
        name = name,
        deps = [":" + name + "_objs"],
        tags = all_tags,
        **kwargs
    )
