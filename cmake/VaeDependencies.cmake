# Dependency lookup. Everything comes from Debian packages (see cmake/install_deps.sh)
# plus the CUDA toolkit, whose cuRAND host generator the CPU path uses for its noise.
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(CUDAToolkit REQUIRED)  # cuRAND runs on the host too: the CPU path needs it
if(VAE_FUZZ)  # the readers' fuzz targets need nothing more
  return()
endif()
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED)
find_package(Freetype REQUIRED)  # text in the plots (with the DejaVu fonts at run time)

# OpenBLAS, its OpenMP build (Debian's libopenblas-openmp-dev): BLAS and our own
# elementwise loops then share one OpenMP thread pool, so the two never oversubscribe the
# cores the way a pthread OpenBLAS and a second pool would.
set(_vae_blas_dir /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
find_library(VAE_OPENBLAS_LIBRARY NAMES openblas PATHS ${_vae_blas_dir} NO_DEFAULT_PATH)
find_path(VAE_OPENBLAS_INCLUDE_DIR NAMES cblas.h
  PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
if(NOT VAE_OPENBLAS_LIBRARY OR NOT VAE_OPENBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "OpenBLAS (OpenMP build) not found under ${_vae_blas_dir}; "
                      "install it with: sudo apt-get install libopenblas-openmp-dev (or run cmake/install_deps.sh)")
endif()
add_library(vae_openblas INTERFACE)
target_include_directories(vae_openblas SYSTEM INTERFACE ${VAE_OPENBLAS_INCLUDE_DIR})
target_link_libraries(vae_openblas INTERFACE ${VAE_OPENBLAS_LIBRARY} OpenMP::OpenMP_CXX)

# Private dependencies of libvae, gathered in one target.
add_library(vae_deps INTERFACE)
target_link_libraries(vae_deps INTERFACE
  vae_openblas ZLIB::ZLIB PNG::PNG Freetype::Freetype nlohmann_json::nlohmann_json
  CUDA::curand Threads::Threads)
