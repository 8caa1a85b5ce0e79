// The MPI communicator (MPI_COMM_WORLD) and the batch shards of data-parallel training.
#include "vae/distributed.h"

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "vae/data.h"
#include "vae/error.h"

#if defined(VAE_HAVE_MPI)
#include <mpi.h>
#endif

namespace vae {

namespace {
// What the launcher says in the first of `vars` it set (Open MPI's, MPICH's, PMI's names), at
// least `least`; `unset` when it set none.
int launcher_number(std::initializer_list<const char*> vars, int least, int unset) {
  for (const char* var : vars) {
    const char* v = std::getenv(var);
    if (v && *v) return std::max(least, std::atoi(v));
  }
  return unset;
}
}  // namespace

int launched_processes() { return launcher_number({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}, 1, 0); }

int launched_rank() { return launcher_number({"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"}, 0, 0); }

int local_processes() {
  return launcher_number({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"}, 1, 1);
}

int local_rank() { return launcher_number({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"}, 0, 0); }

bool mpi_built() {
#if defined(VAE_HAVE_MPI)
  return true;
#else
  return false;
#endif
}

std::int64_t first_bad_value_across_ranks(const Dataset& data, ValueRule rule, Communicator* comm) {
  if (!data.f32_values()) return -1;  // uint8: nothing to check (the same on every rank: the file says)
  if (!comm && data.values_checked(rule)) return -1;
  // With ranks, every rank takes part whatever it holds (a file may be mapped on one machine
  // and read on another): its share of the items, then one sum.
  const int r = comm ? comm->rank() : 0, n = comm ? comm->size() : 1;
  const std::int64_t begin = data.count * r / n, end = data.count * (r + 1) / n;
  std::int64_t k = data.first_bad_value(begin, end, rule);
  if (comm) {
    std::vector<double> first(static_cast<std::size_t>(n), 0.0);  // per rank: its first bad index + 1, or 0
    first[static_cast<std::size_t>(r)] = k >= 0 ? static_cast<double>(k) + 1 : 0.0;  // exact below 2^53
    comm->sum(first.data(), first.size());
    k = -1;
    for (const double f : first)  // the lowest rank's find is the file's first
      if (f > 0) {
        k = static_cast<std::int64_t>(f) - 1;
        break;
      }
  }
  if (k < 0) data.mark_checked(rule);
  return k;
}

Batch shard_of(const Batch& global, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) throw_error("shard_of: rank ", rank, " of ", size, " processes");
  const int B = global.size, base = B / size, extra = B % size;
  Batch s = global;
  s.offset = rank * base + (rank < extra ? rank : extra);
  s.size = base + (rank < extra ? 1 : 0);
  s.indices = global.indices + s.offset;
  s.global_size = B;
  return s;
}

#if defined(VAE_HAVE_MPI)
namespace {

void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(code, text, &n);
  throw_error(call, " failed: ", std::string(text, static_cast<std::size_t>(n)));
}

class MpiWorld final : public Communicator {
 public:
  MpiWorld() {
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      std::atexit([] {
        int done = 0;
        MPI_Finalized(&done);
        if (!done) MPI_Finalize();
      });
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);  // errors as vae::Error, not an abort
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    MPI_Get_library_version(version, &n);
    library_ = std::string(version, static_cast<std::size_t>(n));
    library_ = library_.substr(0, library_.find(','));  // "Open MPI v4.1.4"
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void sum(double* v, std::size_t n) override { reduce(v, n, MPI_DOUBLE); }
  void sum(float* v, std::size_t n) override { reduce(v, n, MPI_FLOAT); }
  void broadcast(std::string& text) override {
    unsigned long long n = text.size();
    check(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast");
    text.resize(static_cast<std::size_t>(n));
    if (n > 0) check(MPI_Bcast(text.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
  }
  std::string name() const override {
    return "MPI (" + library_ + "), " + std::to_string(size_) + (size_ == 1 ? " process" : " processes");
  }

 private:
  // In chunks of at most 2^30 values (MPI counts are int).
  void reduce(void* v, std::size_t n, MPI_Datatype type) {
    int bytes = 0;
    MPI_Type_size(type, &bytes);
    auto* p = static_cast<char*>(v);
    for (std::size_t done = 0; done < n;) {
      const int k = static_cast<int>(std::min<std::size_t>(n - done, std::size_t(1) << 30));
      check(MPI_Allreduce(MPI_IN_PLACE, p + done * static_cast<std::size_t>(bytes), k, type, MPI_SUM, MPI_COMM_WORLD),
            "MPI_Allreduce");
      done += static_cast<std::size_t>(k);
    }
  }
  int rank_ = 0, size_ = 1;
  std::string library_;
};

}  // namespace
#endif

Communicator* world() {
  const int n = launched_processes();
  if (n == 0) return nullptr;
#if defined(VAE_HAVE_MPI)
  static MpiWorld w;
  return &w;
#else
  if (n > 1)
    throw_error("started by mpirun with ", n, " processes, but this vae was built without MPI; install Open MPI ",
                "(apt-get install libopenmpi-dev openmpi-bin) and build again, or run one process");
  return nullptr;
#endif
}

void abort_world(int code) {
#if defined(VAE_HAVE_MPI)
  int ready = 0, done = 0, size = 1;
  MPI_Initialized(&ready);
  MPI_Finalized(&done);
  if (!ready || done) return;  // not started: a process that exits non-zero ends the job anyway
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#else
  (void)code;
#endif
}

}  // namespace vae
