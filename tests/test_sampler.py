"""TaskSampler: seeded epochs, each task once per epoch, exact resume."""

from collections import Counter

import pytest

from rfai.sampler import TaskSampler
from scorers.task import Task


def make_tasks(n: int) -> list[Task]:
    return [Task(f"t{i}", f"prompt {i}", "python", None, (), None) for i in range(n)]


def ids(batch: list[Task]) -> list[str]:
    return [t.task_id for t in batch]


def test_every_task_exactly_once_per_epoch() -> None:
    # 7 tasks, batches of 3: 3 + 3 + 1|2 ... 21 draws = exactly 3 epochs.
    sampler = TaskSampler(make_tasks(7), shuffle=True, seed=1)
    draws = [t for _ in range(7) for t in ids(sampler.next_batch(3))]
    for epoch in range(3):
        assert sorted(draws[7 * epoch : 7 * epoch + 7]) == sorted(f"t{i}" for i in range(7))
    assert sampler.state_dict() == {"epoch": 3, "offset": 0}


def test_epochs_are_different_permutations() -> None:
    sampler = TaskSampler(make_tasks(20), shuffle=True, seed=0)
    first, second = ids(sampler.next_batch(20)), ids(sampler.next_batch(20))
    assert sorted(first) == sorted(second)
    assert first != second  # 1/20! chance of a false failure
    assert first != [f"t{i}" for i in range(20)]


def test_batch_crossing_epoch_boundary_takes_rest_then_next_epoch() -> None:
    sampler = TaskSampler(make_tasks(5), shuffle=True, seed=3)
    epoch0 = sampler._order(0)
    epoch1 = sampler._order(1)
    sampler.next_batch(3)  # epoch 0, positions 0..2
    batch = sampler.next_batch(4)  # epoch 0 positions 3, 4, then epoch 1 positions 0, 1
    assert ids(batch) == [f"t{i}" for i in (*epoch0[3:], *epoch1[:2])]
    assert sampler.state_dict() == {"epoch": 1, "offset": 2}


def test_batch_larger_than_task_list_spans_several_epochs() -> None:
    sampler = TaskSampler(make_tasks(3), shuffle=True, seed=0)
    batch = ids(sampler.next_batch(7))  # 3 + 3 + 1
    assert Counter(batch[:6]) == Counter({"t0": 2, "t1": 2, "t2": 2})
    assert sampler.state_dict() == {"epoch": 2, "offset": 1}


def test_same_seed_same_sequence_other_seed_differs() -> None:
    a = TaskSampler(make_tasks(12), shuffle=True, seed=7)
    b = TaskSampler(make_tasks(12), shuffle=True, seed=7)
    c = TaskSampler(make_tasks(12), shuffle=True, seed=8)
    seq_a = [ids(a.next_batch(5)) for _ in range(6)]
    assert seq_a == [ids(b.next_batch(5)) for _ in range(6)]
    assert seq_a != [ids(c.next_batch(5)) for _ in range(6)]


def test_resume_from_state_dict_gives_identical_continuation() -> None:
    original = TaskSampler(make_tasks(9), shuffle=True, seed=5)
    for _ in range(4):
        original.next_batch(4)  # 16 draws: epoch 1, offset 7
    saved = original.state_dict()
    assert saved == {"epoch": 1, "offset": 7}
    expected = [ids(original.next_batch(4)) for _ in range(5)]

    resumed = TaskSampler(make_tasks(9), shuffle=True, seed=5)
    resumed.load_state_dict(dict(saved))
    assert [ids(resumed.next_batch(4)) for _ in range(5)] == expected


def test_no_shuffle_keeps_file_order() -> None:
    sampler = TaskSampler(make_tasks(4), shuffle=False, seed=123)
    assert [ids(sampler.next_batch(3)) for _ in range(3)] == [
        ["t0", "t1", "t2"],
        ["t3", "t0", "t1"],
        ["t2", "t3", "t0"],
    ]


def test_empty_task_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="no tasks"):
        TaskSampler([], shuffle=True, seed=0)
