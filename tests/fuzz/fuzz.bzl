"""One fuzz target, built as a CI test and as a libFuzzer binary."""

def craft_fuzz_target(name, srcs, deps):
    """Defines <name>_test and <name> from a target's sources.

    <name>_test (tagged "fuzz") runs the seeds in corpus/<name>/, then seeded
    mutations of them (fuzz_driver.cc). <name> is the libFuzzer binary; it only
    links under --config=libfuzzer (scripts/fuzz.sh), hence "manual".
    """
    native.cc_library(
        name = name + "_target",
        testonly = True,
        srcs = srcs,
        deps = deps + [":fuzz_target"],
        alwayslink = True,
    )
    native.cc_test(
        name = name + "_test",
        size = "small",
        args = ["--corpus=tests/fuzz/corpus/" + name],
        data = native.glob(["corpus/%s/*" % name]),
        tags = ["fuzz"],
        deps = [
            ":" + name + "_target",
            ":fuzz_driver",
        ],
    )
    native.cc_binary(
        name = name,
        testonly = True,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
        deps = [
            ":" + name + "_target",
            ":libfuzzer_glue",
        ],
    )
