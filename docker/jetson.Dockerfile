# Build image for the Jetson (aarch64), used by `cross build --target aarch64-unknown-linux-gnu`
# through Cross.toml (JetPack 6.1+) or docker/Cross.jetpack7.toml (JetPack 7.2).
#
# The Ubuntu release must match the JetPack's: a binary links against the glibc of the image it
# was built in, and the Jetson refuses a newer one ("GLIBC_2.3x not found").
#   JetPack 6.1, 6.2: Ubuntu 22.04, glibc 2.35, L4T r36.4, CUDA 12.6, TensorRT 10.3
#   JetPack 7.2:      Ubuntu 24.04, glibc 2.39, L4T r39.2, CUDA 13.x, TensorRT 10.16
#
# With the GPU features on, the host binary itself needs nothing from NVIDIA at build time (CUDA
# is loaded at run time); the TensorRT shim (host/tensorrt) does: its build script looks for
# TensorRT's headers and libraries in the target's multiarch folders and CUDA's in
# /usr/local/cuda/targets/aarch64-linux. NVIDIA's Jetson apt repository has them only for arm64,
# so this image fetches those packages and unpacks them (dpkg -x) into / rather than installing
# them: unpacking needs no arm64 dependency chain on an amd64 image. Set NVIDIA_PACKAGES="" to
# build without the shim (the binary then looks for one at run time, built on the Jetson).
#
# Docker could not run where this file was written: it was read against NVIDIA's and Ubuntu's
# documentation, not built. Package names change between JetPack releases; check them with
#   apt-cache search --names-only 'libnvinfer|cuda-cudart' on the Jetson.
ARG UBUNTU=22.04
FROM ubuntu:${UBUNTU}

ARG DEBIAN_FRONTEND=noninteractive
# The L4T release of NVIDIA's apt repository: r36.4 for JetPack 6.1 and 6.2, r39.2 for 7.2.
ARG L4T=r36.4
# The SoC folder of the repository: t234 is Orin.
ARG SOC=t234
# The CUDA version in NVIDIA's package names: 12-6 for JetPack 6.1 and 6.2, 13-0 for 7.2.
ARG CUDA=12-6
ARG NVIDIA_PACKAGES="libnvinfer-dev libnvinfer-headers-dev libnvinfer10 libnvonnxparsers-dev libnvonnxparsers10 cuda-cudart-dev-${CUDA} cuda-cudart-${CUDA} cuda-crt-${CUDA} cuda-driver-dev-${CUDA}"

RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates curl gcc g++ libc6-dev make pkg-config file \
        gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross \
        binutils-aarch64-linux-gnu qemu-user \
    && rm -rf /var/lib/apt/lists/*

# NVIDIA's arm64 packages, unpacked. Ubuntu's own sources stay amd64-only (its amd64 mirror has
# no arm64 indices; 22.04 lists them in sources.list, 24.04 in ubuntu.sources).
RUN set -eu; \
    if [ -z "${NVIDIA_PACKAGES}" ]; then exit 0; fi; \
    dpkg --add-architecture arm64; \
    if [ -f /etc/apt/sources.list.d/ubuntu.sources ]; then \
        sed -i '/^Types:/a Architectures: amd64' /etc/apt/sources.list.d/ubuntu.sources; \
    else \
        sed -i 's/^deb /deb [arch=amd64] /' /etc/apt/sources.list; \
    fi; \
    curl -fsSL https://repo.download.nvidia.com/jetson/jetson-ota-public.asc \
        -o /etc/apt/trusted.gpg.d/jetson-ota-public.asc; \
    chmod 644 /etc/apt/trusted.gpg.d/jetson-ota-public.asc; \
    printf 'deb [arch=arm64] https://repo.download.nvidia.com/jetson/common %s main\ndeb [arch=arm64] https://repo.download.nvidia.com/jetson/%s %s main\n' \
        "${L4T}" "${SOC}" "${L4T}" > /etc/apt/sources.list.d/nvidia-l4t-apt-source.list; \
    apt-get update; \
    mkdir -p /tmp/nvidia && cd /tmp/nvidia; \
    for p in ${NVIDIA_PACKAGES}; do apt-get download "$p:arm64"; done; \
    for deb in *.deb; do dpkg -x "$deb" /; done; \
    ln -sfn "/usr/local/cuda-$(echo "${CUDA}" | tr - .)" /usr/local/cuda; \
    cd / && rm -rf /tmp/nvidia /var/lib/apt/lists/*; \
    ls /usr/include/aarch64-linux-gnu/NvInfer.h /usr/local/cuda/targets/aarch64-linux/include/cuda_runtime_api.h

ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
    QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
