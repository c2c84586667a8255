// multiproc/detail/pool_task.hpp — private: how a call to the Pool becomes task messages for its
// workers. Users never name any of this.
//
// A task is a type-erased call: a trampoline (one instantiation per task function and input type,
// the same address in every forked worker), the function's address, and a message holding
// kTaskHeaderBytes of room for the pool's header followed by the Codec-encoded input — the
// arguments of an apply, or a chunk of a map's items. The worker calls the trampoline, which
// decodes the input, calls the function and returns the encoded result behind kResultHeaderBytes
// of room. Chunks of plain values (is_bulk_v) are their bytes both ways, with no vector in between.
#pragma once

#include <multiproc/codec.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace multiproc::detail {

// Bytes reserved in front of a task's payload and of a result's payload for the pool's own
// headers, so that neither is copied again to prepend them (layouts: src/pool/pool_core.hpp).
inline constexpr std::size_t kTaskHeaderBytes = 28;
inline constexpr std::size_t kResultHeaderBytes = 13;

//! Runs one task in a worker: decodes the payload, calls the function, and writes the encoded
//! result into `out` after kResultHeaderBytes of room for the header (`out` is the worker's reply
//! buffer, reused from task to task so that its memory stays mapped).
using Trampoline = void (*)(std::uintptr_t fn, const std::byte* in, std::size_t n, std::string& out);

//! One unit of work sent to a worker: `message` holds kTaskHeaderBytes of room, then the payload
//! — or only the header, when the payload is `borrowed_bytes` bytes of the caller's own input at
//! `borrowed` (a chunk of a synchronous map of plain values: see chunk_all), which the pool sends
//! from there, header and payload as one message.
struct PoolTask {
  Trampoline trampoline;
  std::uintptr_t fn;
  std::string message;
  const std::byte* borrowed = nullptr;
  std::size_t borrowed_bytes = 0;
};

//! The largest task (header and payload) that chunk_all leaves in the caller's input: one whole
//! record of a worker's pipe (kStreamChunk), so that it goes into the ring with two copies and no
//! buffer between. Larger chunks are copied into messages of their own, as before.
inline constexpr std::size_t kBorrowMaxBytes = std::size_t{128} << 10;

//! Returns: f as a function pointer. Requires (static_assert): f is a plain function or a
//! captureless lambda.
template <class F>
auto task_pointer(F f) {
  static_assert(std::is_convertible_v<F, decltype(+f)> && std::is_pointer_v<decltype(+f)> &&
                    std::is_function_v<std::remove_pointer_t<decltype(+f)>>,
                "Pool tasks must be plain functions or captureless lambdas: they run in other "
                "processes, where captured state would not exist (pass it as arguments, or set it "
                "up with the Pool's initializer)");
  return +f;
}

template <class FP>
struct fn_traits;
template <class R, class... A>
struct fn_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};

//! Effects: `out` becomes v encoded after `room` bytes (zeros), reusing out's memory.
template <class V>
void encode_into(const V& v, std::size_t room, std::string& out) {
  out.assign(room + Codec<V>::size(v), '\0');
  Codec<V>::encode(v, reinterpret_cast<std::byte*>(out.data()) + room);
}
//! v encoded after `room` unused bytes.
template <class V>
std::string encode_value(const V& v, std::size_t room = 0) {
  std::string out;
  encode_into(v, room, out);
  return out;
}
//! The value encoded in s after `skip` bytes.
template <class V>
V decode_value(const std::string& s, std::size_t skip = 0) {
  return Codec<V>::decode(reinterpret_cast<const std::byte*>(s.data()) + skip, s.size() - skip);
}

//! Plain values (without a codec of the user's) travel in chunks as their bytes, with no vector
//! in between.
template <class T>
inline constexpr bool is_bulk_v = copied_raw_v<T> && !std::is_same_v<T, bool>;

// ---- trampolines: what a worker runs --------------------------------------------------------

//! apply: the message is the encoded tuple of arguments; the reply, the encoded result (none for
//! a void function).
template <class FP>
void apply_trampoline(std::uintptr_t fn, const std::byte* in, std::size_t n, std::string& out) {
  using T = fn_traits<FP>;
  auto args = Codec<typename T::args>::decode(in, n);
  auto f = reinterpret_cast<FP>(fn);
  if constexpr (std::is_void_v<typename T::result>) {
    std::apply(f, args);
    out.assign(kResultHeaderBytes, '\0');
  } else {
    encode_into(std::apply(f, args), kResultHeaderBytes, out);
  }
}

//! The task of a call f(args...) (apply_async, an executor's submit).
template <class F, class... Args>
PoolTask apply_task(F f, Args&&... args) {
  auto fp = task_pointer(f);
  using FP = decltype(fp);
  static_assert(std::is_invocable_v<FP, std::decay_t<Args>&...>,
                "apply_async(f, args...) / submit(f, args...): f cannot be called with these "
                "arguments");
  const typename fn_traits<FP>::args tuple(std::forward<Args>(args)...);
  return {&apply_trampoline<FP>, reinterpret_cast<std::uintptr_t>(fp),
          encode_value(tuple, kTaskHeaderBytes)};
}

//! How a chunk's item is passed to the function: as its one argument (map, imap) or spread into
//! its arguments (starmap: the item is a tuple or a pair).
enum class Spread : bool { no, yes };

//! map / starmap / imap: the message is a chunk of items (Codec<std::vector<In>>); the reply, the
//! vector of results.
template <class FP, class In, Spread S>
void chunk_trampoline(std::uintptr_t fn, const std::byte* in, std::size_t n, std::string& out) {
  using R = typename fn_traits<FP>::result;
  auto f = reinterpret_cast<FP>(fn);
  const auto call = [f](const In& item) -> R {
    if constexpr (S == Spread::yes) {
      return std::apply(f, item);
    } else {
      return f(item);
    }
  };
  if constexpr (is_bulk_v<In> && is_bulk_v<R>) {
    // Both sides are arrays of plain values (their Codec is their bytes): read each input from
    // the message and write each result into the reply, with no vector in between.
    if (n % sizeof(In) != 0) throw_decode_error(typeid(In).name(), n, "not whole values");
    const std::size_t count = n / sizeof(In);
    out.resize(kResultHeaderBytes + count * sizeof(R));
    char* dst = out.data() + kResultHeaderBytes;
    for (std::size_t k = 0; k < count; ++k, in += sizeof(In), dst += sizeof(R)) {
      In item;
      std::memcpy(static_cast<void*>(&item), in, sizeof(In));
      const R r = call(item);
      std::memcpy(dst, static_cast<const void*>(&r), sizeof(R));
    }
  } else {
    const auto items = Codec<std::vector<In>>::decode(in, n);
    std::vector<R> results;
    results.reserve(items.size());
    for (const In& item : items) results.push_back(call(item));
    encode_into(results, kResultHeaderBytes, out);
  }
}

//! A chunked call's function, erased: the result type, the trampoline and the address.
template <class F, class In, Spread S>
struct ChunkCall {
  using FP = decltype(task_pointer(std::declval<F>()));
  using result = typename fn_traits<FP>::result;
  static Trampoline trampoline() noexcept { return &chunk_trampoline<FP, In, S>; }
};

// ---- chunks: what a caller sends ------------------------------------------------------------

//! Task message buffers a pool keeps for reuse, so that their memory stays mapped (a map's chunks
//! in fresh memory paid a page fault per 4 KiB). Thread-safe; at most kCachedBytes kept (the
//! chunks of a map of a million 8-byte values), for the pool's life.
class BufferCache {
 public:
  static constexpr std::size_t kCachedBytes = std::size_t{8} << 20;
  static constexpr std::size_t kSmallest = std::size_t{16} << 10;  // smaller ones: not worth it
  //! Returns: a string of `bytes` bytes (their values unspecified), reusing a kept buffer if one
  //! is large enough.
  std::string take(std::size_t bytes);
  //! Effects: keeps s's memory for a later take, if there is room.
  void give(std::string&& s) noexcept;

 private:
  std::mutex m_;
  std::vector<std::string> free_;
  std::size_t bytes_ = 0;  // capacity kept in free_
};

//! Builds one task message from items added one by one.
template <class In>
class ChunkBuilder {
 public:
  //! Room for `n` items (more are possible; fewer are fine), in a buffer of `cache` if given.
  explicit ChunkBuilder(std::size_t n, BufferCache* cache = nullptr) {
    if constexpr (is_bulk_v<In>) {
      // Codec<std::vector<In>> of plain values is just their bytes: write them straight into the
      // message, behind the room for the task header.
      const std::size_t bytes =
          kTaskHeaderBytes + std::min<std::size_t>(n, std::size_t{1} << 16) * sizeof(In);
      if (cache != nullptr) {
        bytes_ = cache->take(bytes);
      } else {
        bytes_.resize(bytes);
      }
    } else {
      (void)cache;
      part_.reserve(std::min<std::size_t>(n, std::size_t{1} << 12));
    }
  }
  void add(const In& v) {
    if constexpr (is_bulk_v<In>) {
      const std::size_t at = kTaskHeaderBytes + count_ * sizeof(In);
      if (at == bytes_.size()) bytes_.resize(kTaskHeaderBytes + 2 * count_ * sizeof(In) + sizeof(In));
      std::memcpy(bytes_.data() + at, static_cast<const void*>(&v), sizeof(In));
      ++count_;
    } else {
      part_.push_back(v);
    }
  }
  //! Adds the n items at `first` (In values laid out contiguously): one copy of their bytes
  //! instead of n calls of add(), whose count lives in memory (a store-to-load chain per item
  //! that made splitting a map's input the costliest step of Pool::map of plain values).
  void add_contiguous(const In* first, std::size_t n) {
    static_assert(is_bulk_v<In>, "contiguous chunks are of plain values");
    const std::size_t at = kTaskHeaderBytes + count_ * sizeof(In);
    if (bytes_.size() < at + n * sizeof(In)) bytes_.resize(at + n * sizeof(In));
    if (n != 0) std::memcpy(bytes_.data() + at, static_cast<const void*>(first), n * sizeof(In));
    count_ += n;
  }
  //! The task message: kTaskHeaderBytes of room, then the items.
  std::string message() {
    if constexpr (is_bulk_v<In>) {
      bytes_.resize(kTaskHeaderBytes + count_ * sizeof(In));
      return std::move(bytes_);
    } else {
      return encode_value(part_, kTaskHeaderBytes);
    }
  }

 private:
  std::string bytes_;
  std::size_t count_ = 0;
  std::vector<In> part_;
};

//! Whether `Range` holds plain `In` values contiguously, reachable with std::data (a vector, an
//! array, a C array, a string of them): chunk_all then copies a chunk's bytes at once.
template <class In, class Range, class = void>
struct is_contiguous_of : std::false_type {};
template <class In, class Range>
struct is_contiguous_of<In, Range, std::void_t<decltype(std::data(std::declval<const Range&>()))>>
    : std::bool_constant<is_bulk_v<In> &&
                         std::is_same_v<decltype(std::data(std::declval<const Range&>())),
                                        const In*>> {};
template <class In, class Range>
inline constexpr bool is_contiguous_of_v = is_contiguous_of<In, Range>::value;

//! Python's default chunk size for map: about four chunks per worker.
std::size_t default_chunksize(std::size_t items, std::size_t workers) noexcept;

//! map's input, read at once, in chunks of `chunksize` (0: default_chunksize; the size used is
//! stored back, with the number of items in `items`). A forward range is read twice (counting,
//! then copying); an input-only range is first copied into a vector. With `borrow`, the chunks of
//! an input whose plain values lie in one block are not copied (up to kBorrowMaxBytes a task):
//! each task borrows its part of the block (PoolTask::borrowed), which must then stay alive and
//! unchanged until the call finishes — as in map(), whose caller waits for that.
//! Throws: what reading the input throws (nothing is submitted then).
template <class In, class Range>
std::vector<PoolTask> chunk_all(const Range& inputs, std::size_t& chunksize, std::size_t& items,
                                std::size_t workers, Trampoline trampoline, std::uintptr_t fn,
                                BufferCache* cache, bool borrow = false) {
  using It = decltype(std::begin(inputs));
  if constexpr (!std::is_base_of_v<std::forward_iterator_tag,
                                   typename std::iterator_traits<It>::iterator_category>) {
    std::vector<In> copy;
    for (auto it = std::begin(inputs); it != std::end(inputs); ++it) copy.push_back(*it);
    return chunk_all<In>(copy, chunksize, items, workers, trampoline, fn, cache);  // no borrowing
  } else {
    items = static_cast<std::size_t>(std::distance(std::begin(inputs), std::end(inputs)));
    if (chunksize == 0) chunksize = default_chunksize(items, workers);
    std::vector<PoolTask> tasks;
    tasks.reserve(items / chunksize + 1);
    auto it = std::begin(inputs);
    // The items' bytes, when they lie in one block that the range iterates from its start.
    using Ref = decltype(*std::begin(inputs));
    constexpr bool kMaybeBlock =
        is_contiguous_of_v<In, Range> && std::is_lvalue_reference_v<Ref> &&
        std::is_same_v<std::remove_cv_t<std::remove_reference_t<Ref>>, In>;
    const In* block = nullptr;
    if constexpr (kMaybeBlock) {
      if (items != 0 && std::addressof(*it) == std::data(inputs)) block = std::data(inputs);
    }
    for (std::size_t i = 0; i < items; i += chunksize) {
      const std::size_t n = std::min(items - i, chunksize);
      if constexpr (kMaybeBlock) {
        // Borrowed: sent from the caller's input, with no copy in between (on a host that maps a
        // page at its first touch, the copies of a pool's first map cost more than the map).
        if (borrow && block != nullptr && n <= (kBorrowMaxBytes - kTaskHeaderBytes) / sizeof(In)) {
          tasks.push_back({trampoline, fn, std::string(kTaskHeaderBytes, '\0'),
                           reinterpret_cast<const std::byte*>(block + i), n * sizeof(In)});
          continue;
        }
      }
      ChunkBuilder<In> part(n, cache);
      if constexpr (kMaybeBlock) {
        if (block != nullptr) part.add_contiguous(block + i, n);
      }
      if (block == nullptr) {
        for (std::size_t k = 0; k < n; ++k, ++it) part.add(*it);
      }
      tasks.push_back({trampoline, fn, part.message()});
    }
    return tasks;
  }
}

//! Reads a lazy input (imap) a chunk at a time, on the thread that iterates the stream.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  //! Effects: reads up to one chunk of items into `out`, in a buffer of `cache` if given (the
  //! pool's, which takes it back once the chunk is answered). Returns: how many it read (0: the
  //! input ended). An exception from the input is stored in `error` (the items read before it are
  //! in `out`); the source is not read again after that.
  virtual std::size_t read(PoolTask& out, std::exception_ptr& error, BufferCache* cache) noexcept = 0;
};

//! imap's input: `Range` is a reference to the caller's range (which must outlive the stream) or
//! the range itself, kept here (a temporary passed to imap).
template <class In, class Range>
class RangeSource final : public ChunkSource {
 public:
  RangeSource(Range&& range, std::size_t chunksize, Trampoline trampoline, std::uintptr_t fn)
      : range_(std::forward<Range>(range)),
        it_(std::begin(range_)),
        end_(std::end(range_)),
        chunksize_(chunksize),
        trampoline_(trampoline),
        fn_(fn) {}
  std::size_t read(PoolTask& out, std::exception_ptr& error, BufferCache* cache) noexcept override {
    std::size_t n = 0;
    try {
      ChunkBuilder<In> chunk(chunksize_, cache);
      try {
        while (n < chunksize_ && it_ != end_) {
          chunk.add(*it_);
          ++n;  // counted before ++it_: an item read is an item sent, even if ++ then throws
          ++it_;
        }
      } catch (...) {
        error = std::current_exception();
      }
      if (n != 0) out = PoolTask{trampoline_, fn_, chunk.message()};
    } catch (...) {  // no memory for the chunk
      error = std::current_exception();
      n = 0;
    }
    return n;
  }

 private:
  using Stored = std::conditional_t<std::is_lvalue_reference_v<Range>, Range, std::remove_cv_t<Range>>;
  Stored range_;
  decltype(std::begin(std::declval<Stored&>())) it_;
  decltype(std::end(std::declval<Stored&>())) end_;
  std::size_t chunksize_;
  Trampoline trampoline_;
  std::uintptr_t fn_;
};

}  // namespace multiproc::detail
