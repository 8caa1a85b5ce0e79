// Owning buffers: device memory (cudaMalloc) and pinned host memory (cudaHostAlloc).
// Allocation failures throw vae::Error naming what the buffer is for, the bytes asked for
// and what the device had free; release only prints. Plain C++: no nvcc needed.
#pragma once
#include <cstddef>
#include <string>
#include <utility>

namespace vae::gpu {

// cudaMalloc with a clear out-of-memory message ("... for <what>: asked for N bytes, F of T free").
void* device_alloc(std::size_t bytes, const std::string& what);
void device_free(void* p) noexcept;
void* pinned_alloc(std::size_t bytes, const std::string& what);
void pinned_free(void* p) noexcept;

// An owning buffer of `count` T from Alloc, released by Free; moves, never copies.
template <class T, void* (*Alloc)(std::size_t, const std::string&), void (*Free)(void*) noexcept>
class OwnedBuffer {
 public:
  OwnedBuffer() = default;
  OwnedBuffer(std::size_t count, const std::string& what)
      : ptr_(count ? static_cast<T*>(Alloc(count * sizeof(T), what)) : nullptr), count_(count) {}
  ~OwnedBuffer() { Free(ptr_); }
  OwnedBuffer(const OwnedBuffer&) = delete;
  OwnedBuffer& operator=(const OwnedBuffer&) = delete;
  OwnedBuffer(OwnedBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  OwnedBuffer& operator=(OwnedBuffer&& o) noexcept {
    if (this != &o) {
      Free(ptr_);
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

template <class T>
using DeviceBuffer = OwnedBuffer<T, device_alloc, device_free>;  // cudaMalloc
template <class T>
using PinnedBuffer = OwnedBuffer<T, pinned_alloc, pinned_free>;  // cudaHostAlloc

}  // namespace vae::gpu
