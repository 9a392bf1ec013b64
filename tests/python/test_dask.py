"""Map sets written with Dask (issue 13): a real distributed.LocalCluster with two worker
processes writes the shards, the client the manifest; the set equals a dict of the same pairs,
and a failed job leaves neither shards nor a manifest."""
import os

import pytest

import sharedmap

pytestmark = pytest.mark.heavy
distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")
dask_bag = pytest.importorskip("dask.bag")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
sharedmap_dask = pytest.importorskip("sharedmap.dask")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_workers_are_processes_of_their_own(client):
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids


def test_a_bag_of_pairs(client, tmp_path):
    d = {f"k{i * 7919 % 20000:05d}-é": i for i in range(20000)}
    bag = dask_bag.from_sequence(list(d.items()), npartitions=3)
    assert sharedmap_dask.write_set(bag, tmp_path / "s", npartitions=4) == len(d)
    m = sharedmap.open(tmp_path / "s")
    assert m == d and list(m) == sorted(d)
    shards = sharedmap.shards(m)
    assert len(shards) == 4 and all(s.entries > 0 for s in shards)
    assert [s.lower for s in shards[1:]] == sorted(s.lower for s in shards[1:])
    m.verify()


def test_a_dataframe_with_int_keys(client, tmp_path):
    ids = list(range(-3000, 3000, 3))
    frame = pd.DataFrame({"name": [f"n{i}" for i in ids], "id": ids, "score": [i / 2 for i in ids]})
    ddf = dd.from_pandas(frame, npartitions=2)
    n = sharedmap_dask.write_set(ddf, tmp_path / "s", key="id", value="score", npartitions=3)
    assert n == len(ids)
    m = sharedmap.open(tmp_path / "s")
    assert m == {i: i / 2 for i in ids} and list(m) == ids
    assert m.get_many([-3000, 0, 1, 2997]) == [-1500.0, 0.0, None, 1498.5]


def test_replacing_a_set_moves_its_readers(client, tmp_path):
    first = dask_bag.from_sequence([(f"a{i}", i) for i in range(100)], npartitions=2)
    sharedmap_dask.write_set(first, tmp_path / "s")
    m = sharedmap.open(tmp_path / "s")
    with pytest.raises(FileExistsError):
        sharedmap_dask.write_set(first, tmp_path / "s")
    second = dask_bag.from_sequence([(f"b{i}", -i) for i in range(50)], npartitions=2)
    assert sharedmap_dask.write_set(second, tmp_path / "s", force=True) == 50
    assert m.refresh() and m == {f"b{i}": -i for i in range(50)}


def test_a_failed_job_leaves_nothing(client, tmp_path):
    bad = dask_bag.from_sequence([(f"k{i}", [i] if i == 777 else i) for i in range(1000)], npartitions=4)
    with pytest.raises(TypeError, match="values must be"):
        sharedmap_dask.write_set(bad, tmp_path / "s", npartitions=4)
    assert os.listdir(tmp_path / "s") == []
    with pytest.raises(TypeError, match="dask.bag or dask.dataframe"):
        sharedmap_dask.write_set([("a", 1)], tmp_path / "t")
