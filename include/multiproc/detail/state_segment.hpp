// multiproc/detail/state_segment.hpp — a fixed-size state struct in its own segment: the common
// shape of the synchronization primitives (Mutex, Semaphore, Event, Condition, Barrier), and the
// constructors they share. Private.
#pragma once

#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/segment.hpp>

#include <algorithm>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

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

//! A segment holding a State, reached in one of the four ways every primitive offers. When the
//! State is a robust lock (MutexState) or has one (a MutexState member `lock`), the segment is
//! told (track_lock_owner), so that it stays mapped while a thread of this process holds it.
template <class State>
class StateHandle {
 public:
  StateHandle(Kind kind, std::uint64_t count, const Segment::Init& init)
      : StateHandle(Segment::create_anonymous(state_layout<State>(kind, count), init)) {}
  StateHandle(Kind kind, std::uint64_t count, create_only_t, const Name& name,
              const Segment::Init& init)
      : StateHandle(Segment::create(name, state_layout<State>(kind, count), init)) {}
  StateHandle(Kind kind, open_only_t, const Name& name)
      : StateHandle(Segment::open(name, kind, nullptr)) {}
  StateHandle(Kind kind, std::uint64_t count, open_or_create_t, const Name& name,
              const Segment::Init& init)
      : StateHandle(Segment::open_or_create(name, state_layout<State>(kind, count), init)) {}
  //! A State inside another object's segment (a SharedValue's own lock as a Mutex): that object
  //! tracks its lock itself.
  StateHandle(Segment seg, State* state) noexcept : seg_(std::move(seg)), state_(state) {}

  State* state() const noexcept { return state_; }
  const Segment& segment() const noexcept { return seg_; }
  const std::string& what() const noexcept { return seg_.describe(); }

 private:
  template <class S, class = void>
  struct has_lock : std::false_type {};
  template <class S>
  struct has_lock<S, std::void_t<decltype(&S::lock)>> : std::true_type {};

  explicit StateHandle(Segment seg) : seg_(std::move(seg)), state_(state_of<State>(seg_)) {
    if constexpr (std::is_same_v<State, MutexState>) {
      seg_.track_lock_owner(&state_->owner);  // a Mutex or RecursiveMutex
    } else if constexpr (has_lock<State>::value) {
      seg_.track_lock_owner(&state_->lock.owner);
    }
  }

  Segment seg_;
  State* state_;
};

//! Holds a primitive's StateHandle: the default base of Primitive.
template <class State>
class StateHolder {
 protected:
  explicit StateHolder(StateHandle<State> h) noexcept : h_(std::move(h)) {}
  StateHandle<State> h_;
};

//! The four constructors of every primitive that takes no creation parameter (Mutex,
//! RecursiveMutex, Event, Condition), written once: each of those inherits them (`using
//! Primitive::Primitive;`). State is the body, K its kind, Init a function that initialises a
//! zero-filled State in place, given a State*; Base holds the StateHandle (it has a constructor
//! taking one).
template <class State, Kind K, auto Init, class Base = StateHolder<State>>
class Primitive : public Base {
 public:
  //! Effects: creates an unnamed object, shared with children forked after this call.
  Primitive() : Base(StateHandle<State>(K, 1, init())) {}
  //! Effects: creates / opens / opens or creates the object called `name`.
  //! Throws: Error as Segment::create / open / open_or_create (taken or missing name, wrong
  //! kind, ...).
  Primitive(create_only_t, const Name& name)
      : Base(StateHandle<State>(K, 1, create_only, name, init())) {}
  Primitive(open_only_t, const Name& name) : Base(StateHandle<State>(K, open_only, name)) {}
  Primitive(open_or_create_t, const Name& name)
      : Base(StateHandle<State>(K, 1, open_or_create, name, init())) {}

 protected:
  explicit Primitive(StateHandle<State> h) noexcept : Base(std::move(h)) {}

 private:
  static Segment::Init init() {
    return [](void* body) { Init(static_cast<State*>(body)); };
  }
};

}  // namespace multiproc::detail
