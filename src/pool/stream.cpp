// imap / imap_unordered streams: the consumer side reads the input and submits chunks as it
// takes results (see pool_core.hpp for the whole).
#include "pool_core.hpp"

namespace multiproc::detail {

void StreamState::top_up() {
  std::vector<PoolTask> batch;
  std::shared_ptr<PoolCore> core = pool.lock();
  // Chunks in the pool's buffers, which answered chunks return to: fresh ones paid a page fault
  // per 4 KiB whenever glibc had trimmed its heap (see PoolCore::deliver).
  BufferCache* cache = core ? &core->buffers() : nullptr;
  while (!input_done && submitted + batch.size() - taken < window) {
    PoolTask task;
    std::exception_ptr error;
    const std::size_t n = source->read(task, error, cache);
    if (n != 0) batch.push_back(std::move(task));
    if (error) input_error = error;
    if (error || n == 0) input_done = true;
  }
  if (input_done) source.reset();  // a range moved into the stream goes now
  if (!batch.empty()) {
    if (!core) {
      throw Error(errc::bad_state,
                  "multiproc::Pool: the pool was destroyed before the stream read all its input");
    }
    const std::size_t n = batch.size();
    try {
      core->extend(job, std::move(batch));
      submitted += n;
    } catch (...) {
      // The pool stopped taking work (closed and joined, terminated, broken): what was already
      // submitted still arrives, then this error, at its place after them.
      if (!input_error) input_error = std::current_exception();
      input_done = true;
      source.reset();
    }
  }
  if (input_done && open) {
    open = false;
    if (core) core->end_stream_input();
  }
}

bool StreamState::next(std::string& reply) {
  if (over) return false;
  check_job_owner(*job);
  try {
    top_up();
    if (taken == submitted) {  // top_up read to the end of the input
      over = true;
      if (input_error) std::rethrow_exception(input_error);
      return false;
    }
    // The reply before this one goes back to the pool's buffers (PoolCore::deliver).
    if (reply.capacity() >= BufferCache::kSmallest) {
      if (const std::shared_ptr<PoolCore> core = pool.lock()) core->buffers().give(std::move(reply));
    }
    {
      std::unique_lock<std::mutex> lock(job->mutex);
      const bool ordered = job->kind == JobKind::ordered_stream;
      const auto available = [&] {
        return ordered ? job->results.front().has_value() : !job->arrived.empty();
      };
      job->cv.wait(lock, [&] { return available() || job->error; });
      if (!available()) std::rethrow_exception(job->error);
      if (ordered) {
        reply = std::move(*job->results.front());
        job->results.pop_front();
        ++job->first;
      } else {
        reply = std::move(job->arrived.front());
        job->arrived.pop_front();
      }
    }
    ++taken;
    if (reply.size() < kResultHeader) throw Error(errc::corrupt, "multiproc::Pool: a short reply");
    if (reply[kStatusAt] != kStatusOk) std::rethrow_exception(reply_error(reply));
    return true;
  } catch (...) {
    over = true;
    throw;
  }
}

void StreamDeleter::operator()(StreamState* s) const noexcept {
  try {
    if (std::shared_ptr<PoolCore> core = s->pool.lock()) core->cancel_stream(s->job, s->open);
  } catch (...) {
  }
  delete s;
}

bool stream_next(StreamState& stream, std::string& reply) { return stream.next(reply); }

}  // namespace multiproc::detail

namespace multiproc {

detail::StreamHandle Pool::open_stream(
    std::unique_ptr<detail::ChunkSource> source, bool ordered) {
  auto job = std::make_shared<detail::JobState>();
  job->kind = ordered ? detail::JobKind::ordered_stream : detail::JobKind::unordered_stream;
  core_->open_stream();
  detail::StreamHandle s(new detail::StreamState);
  s->pool = core_;
  s->job = std::move(job);
  s->source = std::move(source);
  s->window = detail::kStreamChunksPerWorker * core_->size();
  s->top_up();  // the workers start at once, as in Python
  return s;
}

}  // namespace multiproc
