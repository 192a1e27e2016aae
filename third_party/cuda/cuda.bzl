"""cuda_library: CUDA C++ compiled by /usr/local/cuda/bin/nvcc for sm_90.

    load("//third_party/cuda:cuda.bzl", "cuda_library")

    cuda_library(
        name = "slots",
        srcs = ["device_slots.cc", "slot_kernels.cu"],
        hdrs = ["device_slots.h"],
        deps = ["//third_party:absl", "//third_party/cuda:cudart"],
    )

Every source (.cu, and .cc files that include CUDA, NCCL or cuBLAS headers) is
compiled by nvcc; .cc files go straight to the host compiler with the CUDA
include path, so they may use Abseil and other system headers freely. The
objects are wrapped in a cc_library, which links like any other: depend on
//third_party/cuda:cudart, :nccl or :cublas for the runtime libraries.

Headers of `deps` (their CcInfo) are inputs of every compile, with their
include paths, so a .cu file may include a plain C++ header of another target.
Bazel's C++ toolchain never sees the CUDA headers: keep them out of `hdrs`
that plain cc_library targets include.

Flags: -O2 -std=c++17, device code for sm_90 plus compute_90 PTX, -fPIC host
code. nvcc is not hermetic: it is /usr/local/cuda on the machine. On a
machine without it (@local_cuda's CUDA_AVAILABLE is False) cuda_library and
the cuda_cc_* wrappers tag their targets "manual": wildcards such as //...
skip them, and everything else builds. Use the wrappers for every target
that links CUDA, NCCL or cuBLAS, directly or through a dependency.
"""

load("@local_cuda//:defs.bzl", "CUDA_AVAILABLE")

def _tags(kwargs):
    """kwargs' tags, plus "manual" where CUDA cannot be built."""
    tags = list(kwargs.pop("tags", []))
    if not CUDA_AVAILABLE:
        tags.append("manual")
    return tags

def cuda_cc_library(name, **kwargs):
    """A cc_library that depends on CUDA targets."""
    native.cc_library(name = name, tags = _tags(kwargs), **kwargs)

def cuda_cc_binary(name, **kwargs):
    """A cc_binary that depends on CUDA targets."""
    native.cc_binary(name = name, tags = _tags(kwargs), **kwargs)

def cuda_cc_test(name, **kwargs):
    """A cc_test that depends on CUDA targets."""
    native.cc_test(name = name, tags = _tags(kwargs), **kwargs)

_NVCC = "/usr/local/cuda/bin/nvcc"

_NVCC_FLAGS = [
    "-O2",
    "-std=c++17",
    "--generate-code=arch=compute_90,code=[compute_90,sm_90]",
    "-Xcompiler=-fPIC",
    "-Xcompiler=-Wall",
    "-Xcompiler=-Wno-unused-parameter",
]

def _nvcc_objects_impl(ctx):
    compilation_contexts = [dep[CcInfo].compilation_context for dep in ctx.attr.deps if CcInfo in dep]
    headers = depset(
        ctx.files.hdrs,
        transitive = [c.headers for c in compilation_contexts],
    )
    include_flags = ["-I."]
    for c in compilation_contexts:
        include_flags += ["-I" + p for p in c.includes.to_list()]
        include_flags += ["-I" + p for p in c.quote_includes.to_list()]
        # nvcc wants "-isystem DIR" as two words.
        for p in c.system_includes.to_list():
            include_flags += ["-isystem", p]
        include_flags += ["-D" + d for d in c.defines.to_list()]

    objects = []
    for src in ctx.files.srcs:
        obj = ctx.actions.declare_file("_nvcc/%s/%s.pic.o" % (ctx.label.name, src.basename))
        args = ctx.actions.args()
        args.add_all(_NVCC_FLAGS)
        args.add_all(ctx.attr.copts)
        args.add_all(include_flags)
        if src.extension == "cu":
            args.add("-x", "cu")
        args.add("-c", src)
        args.add("-o", obj)
        ctx.actions.run(
            executable = _NVCC,
            arguments = [args],
            inputs = depset([src], transitive = [headers]),
            outputs = [obj],
            mnemonic = "Nvcc",
            progress_message = "nvcc %s" % src.short_path,
            # nvcc writes temporaries to TMPDIR and finds gcc on PATH.
            use_default_shell_env = True,
        )
        objects.append(obj)
    return [DefaultInfo(files = depset(objects))]

_nvcc_objects = rule(
    implementation = _nvcc_objects_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cu", ".cc"]),
        "hdrs": attr.label_list(allow_files = [".h", ".cuh"]),
        "deps": attr.label_list(),
        "copts": attr.string_list(),
    },
)

def cuda_library(name, srcs, hdrs = [], deps = [], copts = [], visibility = None, **kwargs):
    """nvcc-compiled sources wrapped in a cc_library named `name`.

    Args:
      name: the cc_library's name.
      srcs: .cu and .cc sources, each compiled by nvcc, and private headers
        (.h, .cuh) that only these sources include.
      hdrs: headers of this library (public; keep CUDA headers out of them if
        plain C++ targets include them).
      deps: cc_library targets; their headers are visible to nvcc and they are
        linked in.
      copts: extra nvcc flags.
      visibility: of the cc_library.
      **kwargs: passed to the cc_library (e.g. testonly, linkopts).
    """
    tags = _tags(kwargs)
    # Headers in srcs (such as internal .cuh launchers) are nvcc inputs only.
    private_hdrs = [s for s in srcs if s.endswith(".h") or s.endswith(".cuh")]
    _nvcc_objects(
        name = name + "_nvcc",
        srcs = [s for s in srcs if s not in private_hdrs],
        hdrs = hdrs + private_hdrs,
        deps = deps,
        copts = copts,
        visibility = ["//visibility:private"],
        testonly = kwargs.get("testonly", False),
        tags = tags,
    )
    native.cc_library(
        name = name,
        srcs = [":" + name + "_nvcc"],
        hdrs = hdrs,
        deps = deps,
        visibility = visibility,
        tags = tags,
        **kwargs
    )
