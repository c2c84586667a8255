#!/usr/bin/env python3
"""Checks bench/run.py's judgement of goals (paired ratios, met / MISSED / inconclusive) and its
cleaning of /dev/shm names, without running any benchmark. Run by ctest (bench.run_py)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


class PairedRatios(unittest.TestCase):
    def test_rep_i_against_rep_i(self):
        # higher is better: multiproc's value over the peer's, repetition by repetition
        self.assertEqual(run.paired_ratios([10, 20, 30], [5, 40, 10], "higher"), [2.0, 0.5, 3.0])

    def test_lower_is_better_inverts(self):
        self.assertEqual(run.paired_ratios([2.0, 4.0], [4.0, 2.0], "lower"), [2.0, 0.5])

    def test_failed_runs_drop_only_their_pair(self):
        # rep 2 of the peer failed, rep 3 of multiproc: the pairs do not shift
        self.assertEqual(run.paired_ratios([10, 10, None, 10], [5, None, 5, 20], "higher"),
                         [2.0, 0.5])


def scenario(better, **samples):
    return {impl: {"by_repetition": v, "better": better} for impl, v in samples.items()}


class LimitReason(unittest.TestCase):
    def test_a_limit_below_the_goal_is_named_with_both_ratios(self):
        results = {"pipe_bandwidth_1MiB": scenario(
            "higher", multiproc=[50, 60, 55], bare_ring=[55, 60, 50], memcpy=[100, 100, 100])}
        self.assertEqual(run.limit_reason(results, "pipe_bandwidth_1MiB", "memcpy", 0.9),
                         "the bare limit bare_ring reaches only 0.55x memcpy here; "
                         "multiproc is 1.00x bare_ring")

    def test_each_limit_below_the_goal_is_named(self):
        results = {"pipe_bandwidth_1MiB": scenario(
            "higher", multiproc=[50, 60, 55], bare_ring=[55, 60, 50],
            one_copy_kernel=[80, 80, 80], memcpy=[100, 100, 100])}
        self.assertEqual(run.limit_reason(results, "pipe_bandwidth_1MiB", "memcpy", 0.9),
                         "the bare limit bare_ring reaches only 0.55x memcpy here; "
                         "multiproc is 1.00x bare_ring; the bare limit one_copy_kernel reaches "
                         "only 0.80x memcpy here; multiproc is 0.69x one_copy_kernel")

    def test_a_limit_that_reaches_the_goal_explains_nothing(self):
        results = {"pipe_bandwidth_1MiB": scenario(
            "higher", multiproc=[50, 50, 50], bare_ring=[95, 95, 95], memcpy=[100, 100, 100])}
        self.assertIsNone(run.limit_reason(results, "pipe_bandwidth_1MiB", "memcpy", 0.9))

    def test_no_limit_measured_or_none_declared(self):
        results = {"pipe_bandwidth_1MiB": scenario("higher", multiproc=[50], memcpy=[100]),
                   "lock_uncontended": scenario("lower", multiproc=[2], boost_interprocess_mutex=[1])}
        self.assertIsNone(run.limit_reason(results, "pipe_bandwidth_1MiB", "memcpy", 0.9))
        self.assertIsNone(run.limit_reason(results, "lock_uncontended",
                                           "boost_interprocess_mutex", 1.0))


class FloorReason(unittest.TestCase):
    def test_a_floor_above_the_allowance_is_named(self):
        results = {"pipe_roundtrip_8B": scenario(
            "lower", multiproc=[0.3, 0.25, 0.2], bare_spin=[0.1, 0.1, 0.1],
            one_thread_floor=[0.08, 0.1, 0.07])}
        self.assertEqual(run.floor_reason(results, "pipe_roundtrip_8B", "bare_spin", 1 / 1.5),
                         "multiproc's own work (one_thread_floor: one thread, nothing crossing "
                         "cores) is already 0.80x bare_spin, more than the 0.50x the goal leaves "
                         "beyond it")

    def test_a_floor_within_the_allowance_explains_nothing(self):
        results = {"pipe_roundtrip_8B": scenario(
            "lower", multiproc=[0.3], bare_spin=[0.1], one_thread_floor=[0.04])}
        self.assertIsNone(run.floor_reason(results, "pipe_roundtrip_8B", "bare_spin", 1 / 1.5))

    def test_no_floor_measured_or_none_declared(self):
        results = {"pipe_roundtrip_8B": scenario("lower", multiproc=[0.3], bare_spin=[0.1]),
                   "lock_uncontended": scenario("lower", multiproc=[2], boost_interprocess_mutex=[1])}
        self.assertIsNone(run.floor_reason(results, "pipe_roundtrip_8B", "bare_spin", 1 / 1.5))
        self.assertIsNone(run.floor_reason(results, "lock_uncontended",
                                           "boost_interprocess_mutex", 1.0))


class Judge(unittest.TestCase):
    def test_met_when_the_whole_spread_reaches_the_goal(self):
        verdict, med, lo, hi, reason = run.judge([1.0, 1.2, 1.1], 1.0)
        self.assertEqual((verdict, med, lo, hi, reason), ("met", 1.1, 1.0, 1.2, None))

    def test_missed_when_the_whole_spread_is_below(self):
        verdict, med, lo, hi, reason = run.judge([0.8, 0.9, 0.85], 1.0)
        self.assertEqual((verdict, med, lo, hi, reason), ("MISSED", 0.85, 0.8, 0.9, None))

    def test_inconclusive_when_the_spread_straddles_the_goal(self):
        verdict, med, lo, hi, reason = run.judge([0.9, 1.05, 1.2], 1.0)
        self.assertEqual((verdict, med, lo, hi), ("inconclusive", 1.05, 0.9, 1.2))
        self.assertEqual(reason, "spread 0.90..1.20 straddles the goal 1.00")

    def test_a_median_below_the_goal_can_still_be_inconclusive(self):
        self.assertEqual(run.judge([0.7, 0.8, 1.6], 1.0)[0], "inconclusive")

    def test_top_of_the_spread_on_the_goal_straddles(self):
        self.assertEqual(run.judge([0.9, 1.0], 1.0)[0], "inconclusive")

    def test_one_repetition_is_never_inconclusive(self):
        self.assertEqual(run.judge([0.99], 1.0)[0], "MISSED")
        self.assertEqual(run.judge([1.0], 1.0)[0], "met")

    def test_no_pairs(self):
        self.assertEqual(run.judge([], 1.0)[0], "not measured")


class Goals(unittest.TestCase):
    def test_issue_16_goals(self):
        goals = {(s, p): g for s, p, g in run.GOALS}
        for scenario in ("lock_contention_2p", "lock_contention_4p", "lock_contention_8p",
                         "lock_uncontended"):
            self.assertEqual(goals[(scenario, "boost_interprocess_mutex")], 1.0)
        self.assertEqual(goals[("queue_strings_64B", "boost_message_queue")], 3.0)
        self.assertEqual(goals[("queue_strings_4KiB", "boost_message_queue")], 3.0)
        self.assertEqual(goals[("queue_spsc_8B", "bare_spin_ring")], 0.7)
        self.assertAlmostEqual(goals[("pipe_roundtrip_8B", "bare_spin")], 1 / 1.5)
        self.assertEqual(goals[("pipe_bandwidth_1MiB", "memcpy")], 0.9)
        self.assertEqual(goals[("pool_map_100k", "python_pool")], 15.0)
        self.assertEqual(goals[("pool_apply_async", "python_pool")], 15.0)
        self.assertEqual(len(goals), len(run.GOALS), "a (scenario, peer) pair twice")


@unittest.skipUnless(os.path.isdir("/dev/shm"), "no /dev/shm")
class Leftovers(unittest.TestCase):
    def test_removes_only_the_names_of_that_run(self):
        pid = 2 ** 22 + os.getpid()  # above pid_max's default: no real run has it
        mine = ["bench.%d.mq" % pid, "mp.bench.%d.names.7" % pid]
        other = ["bench.%d7.mq" % pid]  # another pid that begins with the same digits
        for name in mine + other:
            open(os.path.join("/dev/shm", name), "w").close()
        try:
            self.assertEqual(sorted(run.remove_names_of(pid)), sorted(mine))
            for name in mine:
                self.assertFalse(os.path.exists(os.path.join("/dev/shm", name)))
            self.assertTrue(os.path.exists(os.path.join("/dev/shm", other[0])))
        finally:
            for name in mine + other:
                try:
                    os.unlink(os.path.join("/dev/shm", name))
                except FileNotFoundError:
                    pass


if __name__ == "__main__":
    unittest.main()
