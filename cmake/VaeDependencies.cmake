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
# Debian's place for it, under each CMAKE_PREFIX_PATH entry first (bench/gpu_proof.sh unpacks
# carried packages into such a prefix when it builds on a GPU machine), then under /usr.
set(_vae_arch ${CMAKE_LIBRARY_ARCHITECTURE})
if(NOT _vae_arch)
  set(_vae_arch x86_64-linux-gnu)
endif()
set(_vae_blas_lib_dirs)
set(_vae_blas_inc_dirs)
set(_vae_prefixes ${CMAKE_PREFIX_PATH})
if(DEFINED ENV{CMAKE_PREFIX_PATH})
  string(REPLACE ":" ";" _vae_env_prefixes "$ENV{CMAKE_PREFIX_PATH}")
  list(APPEND _vae_prefixes ${_vae_env_prefixes})
endif()
foreach(_p ${_vae_prefixes} /usr)
  list(APPEND _vae_blas_lib_dirs ${_p}/lib/${_vae_arch}/openblas-openmp)
  list(APPEND _vae_blas_inc_dirs ${_p}/include/${_vae_arch}/openblas-openmp)
endforeach()
set(_vae_blas_dir /usr/lib/${_vae_arch}/openblas-openmp)
find_library(VAE_OPENBLAS_LIBRARY NAMES openblas PATHS ${_vae_blas_lib_dirs} NO_DEFAULT_PATH)
find_path(VAE_OPENBLAS_INCLUDE_DIR NAMES cblas.h PATHS ${_vae_blas_inc_dirs} NO_DEFAULT_PATH)
if(NOT VAE_OPENBLAS_LIBRARY OR NOT VAE_OPENBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "OpenBLAS (OpenMP build) not found under ${_vae_blas_dir}; "
                      "install it with: sudo apt-get install libopenblas-openmp-dev (or run cmake/install_deps.sh)")
endif()
# SLEEF (Debian's libsleef-dev): vector exp and log1p for the CPU path's Bernoulli pass,
# used when the build targets AVX2 or AVX-512 (VAE_NATIVE). Without it the pass is scalar.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(SLEEF QUIET IMPORTED_TARGET sleef)
endif()
add_library(vae_sleef INTERFACE)
if(SLEEF_FOUND)
  target_link_libraries(vae_sleef INTERFACE PkgConfig::SLEEF)
  target_compile_definitions(vae_sleef INTERFACE VAE_HAVE_SLEEF=1)
else()
  message(STATUS "SLEEF not found (apt-get install libsleef-dev): the CPU Bernoulli pass stays scalar")
endif()

add_library(vae_openblas INTERFACE)
target_include_directories(vae_openblas SYSTEM INTERFACE ${VAE_OPENBLAS_INCLUDE_DIR})
target_link_libraries(vae_openblas INTERFACE ${VAE_OPENBLAS_LIBRARY} OpenMP::OpenMP_CXX)

# Private dependencies of libvae, gathered in one target.
add_library(vae_deps INTERFACE)
target_link_libraries(vae_deps INTERFACE
  vae_openblas vae_sleef ZLIB::ZLIB PNG::PNG Freetype::Freetype nlohmann_json::nlohmann_json
  CUDA::curand Threads::Threads)

# Open MPI (Debian's libopenmpi-dev, openmpi-bin): data-parallel training under mpirun
# (include/vae/distributed.h). Optional: without it every single-process feature stays, and
# `vae train` started by mpirun with several processes says the build lacks MPI.
set(VAE_MPI "AUTO" CACHE STRING "Data-parallel training over MPI: AUTO (when MPI is found), ON or OFF")
set_property(CACHE VAE_MPI PROPERTY STRINGS AUTO ON OFF)
set(VAE_HAVE_MPI OFF)
if(NOT VAE_MPI STREQUAL "OFF")
  if(VAE_MPI STREQUAL "ON")
    find_package(MPI REQUIRED COMPONENTS CXX)
  else()
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(MPI_CXX_FOUND)
    set(VAE_HAVE_MPI ON)
    target_link_libraries(vae_deps INTERFACE MPI::MPI_CXX)
    target_compile_definitions(vae_deps INTERFACE VAE_HAVE_MPI=1)
  else()
    message(STATUS "MPI not found (apt-get install libopenmpi-dev openmpi-bin): no data-parallel training")
  endif()
endif()

# NCCL: the CUDA backend's data-parallel gradient sum on the GPU, inside the step graph
# (kernels/allreduce.cu). Only nccl.h is needed to build (the CUDA toolkit's here; the
# PyTorch environment's nvidia-nccl package elsewhere): libnccl.so.2 is opened at run time,
# so a vae built with it still runs where NCCL is absent, summing through MPI on host buffers.
set(VAE_NCCL "AUTO" CACHE STRING "GPU data-parallel sums through NCCL: AUTO (when nccl.h is found), ON or OFF")
set_property(CACHE VAE_NCCL PROPERTY STRINGS AUTO ON OFF)
add_library(vae_nccl INTERFACE)
set(VAE_HAVE_NCCL OFF)
if(NOT VAE_NCCL STREQUAL "OFF")
  find_path(VAE_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NCCL_HOME PATH_SUFFIXES include)
  find_library(VAE_NCCL_LIBRARY NAMES libnccl.so.2 nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ENV NCCL_HOME PATH_SUFFIXES lib lib64)
  if(VAE_NCCL_INCLUDE_DIR)
    set(VAE_HAVE_NCCL ON)
    target_include_directories(vae_nccl INTERFACE ${VAE_NCCL_INCLUDE_DIR})
    # The library CMake found: the last place the run-time lookup tries.
    set(_vae_nccl_lib "")
    if(VAE_NCCL_LIBRARY)
      get_filename_component(_vae_nccl_lib ${VAE_NCCL_LIBRARY} REALPATH)
    endif()
    target_compile_definitions(vae_nccl INTERFACE VAE_HAVE_NCCL=1 VAE_NCCL_BUILD_LIBRARY="${_vae_nccl_lib}")
    target_link_libraries(vae_nccl INTERFACE ${CMAKE_DL_LIBS})
    target_link_libraries(vae_deps INTERFACE vae_nccl)
  elseif(VAE_NCCL STREQUAL "ON")
    message(FATAL_ERROR "VAE_NCCL=ON but nccl.h was not found (set NCCL_HOME)")
  else()
    message(STATUS "nccl.h not found: GPU ranks sum their gradients through MPI on host buffers")
  endif()
endif()
