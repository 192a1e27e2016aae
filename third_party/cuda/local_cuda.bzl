"""local_cuda: whether this machine can build the CUDA targets.

    load("//third_party/cuda:local_cuda.bzl", "local_cuda")
    local_cuda(name = "local_cuda")

makes @local_cuda//:defs.bzl with CUDA_AVAILABLE: True when
/usr/local/cuda/bin/nvcc exists, unless the environment says CRAFT_CUDA=0
(e.g. `bazel build --repo_env=CRAFT_CUDA=0 //...`, to check the build of a
machine without CUDA). cuda.bzl tags every CUDA target "manual" when it is
False, so `bazel build //...` and `bazel test //...` leave them out there.
"""

def _local_cuda_impl(ctx):
    nvcc = ctx.path("/usr/local/cuda/bin/nvcc")
    available = nvcc.exists and ctx.os.environ.get("CRAFT_CUDA", "") != "0"
    ctx.file("BUILD.bazel", "exports_files([\"defs.bzl\"])\n")
    ctx.file("defs.bzl", "CUDA_AVAILABLE = %s\n" % ("True" if available else "False"))

local_cuda = repository_rule(
    implementation = _local_cuda_impl,
    environ = ["CRAFT_CUDA"],
    local = True,
)
