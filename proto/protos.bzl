"""The .proto files of craft.v1, by name: one list for every rule that generates from them."""

CRAFT_PROTOS = [
    "agent",
    "layout",
    "load",
    "placement",
    "worker",
]

def proto_cc_library(name, directory, protos):
    """C++ messages and gRPC stubs of `directory`/<p>.proto for each p in `protos`.

    Generated with Debian's protoc and grpc_cpp_plugin; include the headers as
    "<directory>/<p>.pb.h" and "<directory>/<p>.grpc.pb.h".
    """
    native.genrule(
        name = name + "_codegen",
        srcs = ["%s/%s.proto" % (directory, p) for p in protos],
        outs = ["%s/%s%s" % (directory, p, ext) for p in protos for ext in [
            ".pb.h",
            ".pb.cc",
            ".grpc.pb.h",
            ".grpc.pb.cc",
        ]],
        cmd = "/usr/bin/protoc -Iproto --cpp_out=$(GENDIR)/proto --grpc_out=$(GENDIR)/proto " +
              "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin $(SRCS)",
    )
    native.cc_library(
        name = name,
        srcs = ["%s/%s%s" % (directory, p, ext) for p in protos for ext in [".pb.cc", ".grpc.pb.cc"]],
        hdrs = ["%s/%s%s" % (directory, p, ext) for p in protos for ext in [".pb.h", ".grpc.pb.h"]],
        includes = ["."],
        deps = ["//third_party:grpc++"],
    )
