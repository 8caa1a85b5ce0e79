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

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::size_t count, const std::string& what)
      : ptr_(count ? static_cast<T*>(device_alloc(count * sizeof(T), what)) : nullptr), count_(count) {}
  ~DeviceBuffer() { device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(ptr_);
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
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(std::size_t count, const std::string& what)
      : ptr_(count ? static_cast<T*>(pinned_alloc(count * sizeof(T), what)) : nullptr), count_(count) {}
  ~PinnedBuffer() { pinned_free(ptr_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      pinned_free(ptr_);
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

}  // namespace vae::gpu
