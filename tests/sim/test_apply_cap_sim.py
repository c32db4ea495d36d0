"""Members that apply part of a Ready and the rest later, as a ClusterNode does when its apply
budget runs out (tests/cluster/test_node_apply_budget.py): the swarm draws a cap per member
incarnation (``SimCluster(apply_caps=...)``, swarm.APPLY_CAPS), and every invariant holds under
its faults. The control, a member that applies the capped part but lets advance() take the
whole range as applied (``apply_cap_skips_rest``), must be caught."""
from __future__ import annotations

import pytest

from aeronpy.testing.sim import SimCluster
from aeronpy.testing.swarm import APPLY_CAPS, run_seed


def test_the_swarm_applies_in_parts_and_every_invariant_holds():
    assert any(APPLY_CAPS) and 0 in APPLY_CAPS
    results = [run_seed(seed) for seed in range(40)]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    capped = [r.faults["apply_capped"] for r in results]
    assert sum(c > 0 for c in capped) >= 10, capped       # the caps did cut Readies short


def test_control_a_member_that_skips_the_rest_of_a_capped_ready_is_caught():
    results = [run_seed(seed, bugs=("apply_cap_skips_rest",)) for seed in range(40)]
    failed = [r for r in results if not r.ok]
    assert len(failed) >= 10, [r.seed for r in results]
    assert any("diverge" in r.error for r in failed), [r.error for r in failed][:3]


def test_apply_caps_off_keeps_a_seeds_course_and_bad_caps_are_refused():
    """The caps come from generators of their own: a SimCluster without them runs as before."""
    def course(**options):
        sim = SimCluster(seed=11, **options)
        sim.run_for(2_000)
        return sim.events, [sim.core(m).commit_index for m in range(3)]
    assert course() == course(apply_caps=())
    with pytest.raises(ValueError, match="apply_caps"):
        SimCluster(seed=1, apply_caps=(-1,))
