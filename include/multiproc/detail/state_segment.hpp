// multiproc/detail/state_segment.hpp — a fixed-size state struct in its own segment: the common
// shape of the synchronization primitives (Mutex, Semaphore, Event, Condition, Barrier). Private.
#pragma once

#include <multiproc/segment.hpp>

#include <algorithm>
#include <cstdint>
#include <new>

namespace multiproc::detail {

//! The layout of a segment whose body is one State. `count` is a parameter that must agree when
//! the object is opened with open_or_create (a barrier's parties, a bounded semaphore's bound).
template <class State>
SegmentLayout state_layout(Kind kind, std::uint64_t count = 1) {
  SegmentLayout layout;
  layout.kind = kind;
  layout.count = count;
  layout.body_size = sizeof(State);
  layout.body_alignment = std::max<std::size_t>(alignof(State), kCacheLine);
  return layout;
}

//! The State of an opened or created segment, after checking the body has the right size.
template <class State>
State* state_of(const Segment& seg) {
  seg.expect_body_size(sizeof(State));
  return std::launder(static_cast<State*>(seg.body()));
}

//! A segment holding a State, reached in one of the four ways every primitive offers.
template <class State>
class StateHandle {
 public:
  StateHandle(Kind kind, std::uint64_t count, const Segment::Init& init)
      : seg_(Segment::create_anonymous(state_layout<State>(kind, count), init)),
        state_(state_of<State>(seg_)) {}
  StateHandle(Kind kind, std::uint64_t count, create_only_t, const Name& name,
              const Segment::Init& init)
      : seg_(Segment::create(name, state_layout<State>(kind, count), init)),
        state_(state_of<State>(seg_)) {}
  StateHandle(Kind kind, open_only_t, const Name& name)
      : seg_(Segment::open(name, kind, nullptr)), state_(state_of<State>(seg_)) {}
  StateHandle(Kind kind, std::uint64_t count, open_or_create_t, const Name& name,
              const Segment::Init& init)
      : seg_(Segment::open_or_create(name, state_layout<State>(kind, count), init)),
        state_(state_of<State>(seg_)) {}

  State* state() const noexcept { return state_; }
  const Segment& segment() const noexcept { return seg_; }
  const std::string& what() const noexcept { return seg_.describe(); }

 private:
  Segment seg_;
  State* state_;
};

}  // namespace multiproc::detail
