# Sourced (not run) by run.sh and cluster.sh on the GPU machine: the
# environment the binaries staged by stage.sh run in. Expects STAGE (the
# .device folder); sets CRAFT_MISSING_LIBS to the libraries it did not find.
#
# The binaries bring their own libraries in $STAGE/lib; the CUDA runtime,
# cuBLAS and NCCL are the machine's (matching its driver), found with ldconfig,
# else under /usr/local (CUDA toolkits, Python environments' nvidia-*
# packages), /usr/lib or /opt.
# shellcheck shell=bash

# NVLink multicast stays off on shared machines.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

CRAFT_MISSING_LIBS=""
craft_libdirs="$STAGE/lib"
for craft_lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
  craft_found="$(ldconfig -p 2>/dev/null | awk -v l="$craft_lib" '$1 == l {print $NF; exit}')"
  if [[ -z "$craft_found" ]]; then
    craft_found="$(find /usr/local /usr/lib /opt -name "$craft_lib" 2>/dev/null | head -1 || true)"
  fi
  if [[ -z "$craft_found" ]]; then
    CRAFT_MISSING_LIBS+="${CRAFT_MISSING_LIBS:+ }$craft_lib"
  elif [[ ":$craft_libdirs:" != *":$(dirname "$craft_found"):"* ]]; then
    craft_libdirs+=":$(dirname "$craft_found")"
  fi
done
export LD_LIBRARY_PATH="$craft_libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset craft_lib craft_found craft_libdirs
