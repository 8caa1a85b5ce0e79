# Dependency lookup. Everything comes from Debian packages (see cmake/install_deps.sh)
# plus the CUDA toolkit, whose cuRAND host generator the CPU path uses for its noise.
find_package(PkgConfig REQUIRED)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(Threads REQUIRED)
find_package(CUDAToolkit REQUIRED)  # cuRAND runs on the host too: the CPU path needs it

# Private dependencies of libvae, gathered in one target.
add_library(vae_deps INTERFACE)
target_link_libraries(vae_deps INTERFACE
  PkgConfig::OPENBLAS ZLIB::ZLIB PNG::PNG nlohmann_json::nlohmann_json
  CUDA::curand Threads::Threads)
