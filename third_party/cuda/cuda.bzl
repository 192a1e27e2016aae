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

Each cuda_library NAME also has NAME_clang_check (manual, tagged
"clang_host_check"; only where CUDA is available): its .cc sources compiled by
clang with the build's --copt and --cxxopt for the diagnostics alone, which is
how scripts/thread_safety.sh checks their lock annotations (gcc, nvcc's host
compiler, ignores them). The cc_library carries the tag "nvcc".

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

def _include_flags(deps):
    """Headers and include flags of `deps` (their CcInfo), for nvcc and clang."""
    compilation_contexts = [dep[CcInfo].compilation_context for dep in deps if CcInfo in dep]
    headers = depset(transitive = [c.headers for c in compilation_contexts])
    include_flags = ["-I."]
    for c in compilation_contexts:
        include_flags += ["-I" + p for p in c.includes.to_list()]
        include_flags += ["-I" + p for p in c.quote_includes.to_list()]
        # nvcc wants "-isystem DIR" as two words.
        for p in c.system_includes.to_list():
            include_flags += ["-isystem", p]
        include_flags += ["-D" + d for d in c.defines.to_list()]
    return headers, include_flags

def _nvcc_objects_impl(ctx):
    dep_headers, include_flags = _include_flags(ctx.attr.deps)
    headers = depset(ctx.files.hdrs, transitive = [dep_headers])

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

# Debian's clang (scripts/install_deps.sh), and the headers nvcc finds itself.
_CLANG = "clang++"
_CUDA_INCLUDE = "/usr/local/cuda/include"

def _clang_host_check_impl(ctx):
    dep_headers, include_flags = _include_flags(ctx.attr.deps)
    headers = depset(ctx.files.hdrs, transitive = [dep_headers])
    cpp = ctx.fragments.cpp
    stamps = []
    for src in ctx.files.srcs:
        if src.extension != "cc":
            continue  # device code: nvcc only
        stamp = ctx.actions.declare_file("_clang_check/%s/%s.ok" % (ctx.label.name, src.basename))
        args = ctx.actions.args()
        args.add(stamp)
        args.add_all(["-fsyntax-only", "-std=c++17", "-isystem", _CUDA_INCLUDE])
        args.add_all(cpp.copts)
        args.add_all(cpp.cxxopts)
        args.add_all(include_flags)
        args.add(src)
        ctx.actions.run_shell(
            command = 'stamp="$1"; shift; %s "$@" && touch "$stamp"' % _CLANG,
            arguments = [args],
            inputs = depset([src], transitive = [headers]),
            outputs = [stamp],
            mnemonic = "ClangHostCheck",
            progress_message = "clang check %s" % src.short_path,
            use_default_shell_env = True,
        )
        stamps.append(stamp)
    return [DefaultInfo(files = depset(stamps))]

# The host sources of a cuda_library (.cc), compiled by clang for its
# diagnostics only, with the build's --copt and --cxxopt: the thread-safety
# build (scripts/thread_safety.sh) checks them this way, as nvcc hands them to
# gcc, which ignores the annotations. Outputs are empty stamps.
_clang_host_check = rule(
    implementation = _clang_host_check_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cu", ".cc"]),
        "hdrs": attr.label_list(allow_files = [".h", ".cuh"]),
        "deps": attr.label_list(),
    },
    fragments = ["cpp"],
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
        # Lets the thread-safety build leave nvcc's objects out.
        tags = tags + ["nvcc"],
        **kwargs
    )
    if CUDA_AVAILABLE:
        _clang_host_check(
            name = name + "_clang_check",
            srcs = [s for s in srcs if s not in private_hdrs],
            hdrs = hdrs + private_hdrs,
            deps = deps,
            visibility = ["//visibility:private"],
            testonly = kwargs.get("testonly", False),
            tags = ["manual", "clang_host_check"],
        )
