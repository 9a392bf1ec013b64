"""The PyTorch example, examples/torch_dataset.py: its Dataset over a small published map, read by
real DataLoader workers (fork and spawn), gives every batch the same as the data itself and the
same as its dict twin; the script runs end to end and removes its maps.  Skipped without torch.
"""
import os
import pickle
import subprocess
import sys

import pytest

from support import child_env, my_shm_entries, unique_name

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples")

pytestmark = pytest.mark.heavy

N, DIM, SEED = 2000, 8, 3


@pytest.fixture(scope="module")
def ex():
    """The example module.  torch is imported here, not when the file is collected, so that the
    runs that deselect heavy tests (the ASan build, the other Pythons) never import it."""
    pytest.importorskip("torch", reason="torch is not installed (the example needs it)")
    pytest.importorskip("numpy")
    # On sys.path (not loaded from its file), so that spawned workers can import it too: a
    # spawned worker unpickles the Dataset, whose class is torch_dataset.SharedMapDataset.
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    import torch_dataset

    return torch_dataset


@pytest.fixture
def maps(ex, new_name):
    """The example's two maps (N items) published under a fresh name; removed afterwards."""
    name = new_name("-torch")
    ex.publish(name, N, DIM, SEED)
    yield name
    ex.unpublish(name)


def expected_rows(ex):
    """ID -> (feature row, label), straight from the data the maps were built from."""
    ids = ex.make_ids(N, SEED)
    features, labels = ex.make_features(N, DIM, SEED)
    return {k: (features[i], int(labels[i])) for i, k in enumerate(ids.tolist())}


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_batches_equal_the_dict(ex, maps, start_method):
    shared = ex.SharedMapDataset(ex.make_ids(N, SEED), DIM, maps)
    plain = ex.DictDataset.from_seed(N, DIM, SEED)
    expected = expected_rows(ex)
    # the same seed: the same order of indices, so batch i of one is batch i of the other
    got = ex.make_loader(shared, start_method, batch_size=64, workers=2, seed=5)
    twin = ex.make_loader(plain, start_method, batch_size=64, workers=0, seed=5)
    assert len(got) == len(twin) == (N + 63) // 64
    seen = []
    for batch, other in zip(got, twin):
        assert set(batch) == {"id", "features", "label"}
        assert batch["features"].dtype == ex.torch.float32 and batch["features"].shape[1] == DIM
        assert batch["label"].dtype == ex.torch.int64
        for key in batch:
            assert ex.torch.equal(batch[key], other[key]), key
        for k, row, label in zip(batch["id"].tolist(), batch["features"], batch["label"].tolist()):
            assert ex.np.array_equal(row.numpy(), expected[k][0]) and label == expected[k][1]
        seen += batch["id"].tolist()
    assert sorted(seen) == sorted(expected)  # every item exactly once


def test_pickles_by_reference(ex, maps):
    """What a spawned worker receives: the names of the maps (and the ids), not the table."""
    shared = ex.SharedMapDataset(ex.make_ids(N, SEED), DIM, maps)
    plain = ex.DictDataset.from_seed(N, DIM, SEED)
    table = N * DIM * 4
    assert len(pickle.dumps(shared)) < shared.ids.nbytes + 1000
    assert len(pickle.dumps(plain)) > table
    again = pickle.loads(pickle.dumps(shared))
    assert again.features.name == f"{maps}.features"
    assert ex.np.array_equal(again.__getitems__([0, 5])["features"], shared.__getitems__([0, 5])["features"])


def test_one_item_and_batch_sampler(ex, maps):
    """__getitem__ takes an int (one item) or a list (a BatchSampler with batch_size=None)."""
    shared = ex.SharedMapDataset(ex.make_ids(N, SEED), DIM, maps)
    expected = expected_rows(ex)
    item = shared[7]
    k = int(item["id"])
    assert ex.np.array_equal(item["features"], expected[k][0]) and int(item["label"]) == expected[k][1]
    sampler = ex.torch.utils.data.BatchSampler(range(N), batch_size=100, drop_last=False)
    loader = ex.torch.utils.data.DataLoader(shared, sampler=sampler, batch_size=None)
    batches = list(loader)
    assert len(batches) == N // 100
    assert batches[3]["features"].shape == (100, DIM)
    assert ex.torch.equal(batches[3]["id"], ex.torch.from_numpy(shared.ids[300:400]))


def test_missing_id_is_a_key_error(ex, maps):
    shared = ex.SharedMapDataset(ex.np.array([1, 2, 3], dtype=ex.np.int64), DIM, maps)
    with pytest.raises(KeyError):
        shared.__getitems__([0, 1])


def test_script_runs_and_cleans_up(ex):
    """The whole script, small, every table (fork only: spawned workers, which import torch
    afresh, are tested above); no map is left in /dev/shm."""
    name = unique_name("-torchcli")
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "torch_dataset.py"), "--n", str(N), "--dim", str(DIM),
         "--batch-size", "128", "--start-method", "fork", "--name", name],
        capture_output=True, text=True, env=child_env(), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for run in ("none, fork", "sharedmap, fork", "dict, fork", "\nsummary"):
        assert run in proc.stdout
    assert proc.stdout.count("worker 1 ") == 3
    assert [p for p in my_shm_entries() if name in p] == []
