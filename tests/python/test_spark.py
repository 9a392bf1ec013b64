"""Map sets written with PySpark (issue 13), in local mode: a real JVM and real Python worker
processes write the shards into a staging directory, the driver moves them into the set and
writes the manifest; the set equals a dict of the same pairs, with one shard per non-empty range
partition and increasing bounds; non-ASCII and astral-plane strings, high bytes and int64
extremes come out in sharedmap's order (which is Spark's); numpy values are converted; empty
partitions make no shard and empty input one empty shard; force=True replaces a set under a
reader that refresh()es; a failed job (a bad value, a null key) leaves no shard, no staging
directory, no manifest and the old set as it was; key columns that do not sort as sharedmap
does are refused before any job."""
import os
import shutil
import sys

import pytest

import sharedmap

pytestmark = pytest.mark.heavy
pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed")
if shutil.which("java") is None:
    pytest.skip("PySpark needs Java, and there is no java on PATH", allow_module_level=True)
sharedmap_spark = pytest.importorskip("sharedmap.spark")


@pytest.fixture(scope="module")
def spark():
    saved = {v: os.environ.get(v) for v in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ.update(dict.fromkeys(saved, sys.executable))  # the workers import this sharedmap
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("sharedmap-test")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    for var, was in saved.items():
        if was is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = was


def files(path):
    return sorted(os.listdir(path))


def check_set(path, d, max_shards, only=True):
    m = sharedmap.open(path)
    assert m == d and len(m) == len(d)
    assert list(m) == sorted(d)
    m.verify()
    parts = sharedmap.shards(m)
    assert 1 <= len(parts) <= max_shards and parts[0].lower is None
    assert all(p.entries > 0 for p in parts) or len(d) == 0
    lowers = [p.lower for p in parts[1:]]
    assert lowers == sorted(set(lowers))
    assert sum(p.entries for p in parts) == len(d)
    if only:  # the manifest and its shard files, nothing else (no staging directory, no empty shards)
        assert files(path) == sorted(["MANIFEST"] + [f for f in files(path) if f.startswith("shard-")])
        assert len(files(path)) == 1 + len(parts)
    return m


def test_a_dataframe(spark, tmp_path):
    d = {f"k{i * 7919 % 20000:05d}": i for i in range(20000)}
    # some duplicate rows (the same pair again): one entry each
    rows = list(d.items()) + [(k, d[k]) for k in list(d)[:50]]
    df = spark.createDataFrame(rows, ["key", "value"]).repartition(3)
    assert sharedmap_spark.write_set(df, str(tmp_path / "s"), num_shards=4) == len(d)
    m = check_set(tmp_path / "s", d, 4)
    assert len(sharedmap.shards(m)) >= 2


# Java's String.compareTo orders by UTF-16 code units, which puts U+10000.. (surrogate pairs,
# D800-DBFF) before U+E000..U+FFFF; UTF-8 bytes (Spark's UTF8String, sharedmap, Python) after.
NON_ASCII = ["", "\x00", "\x7f", "\x80", "é", "e\u0301", "ö", "ÿ", "Ā", "ß", "Straße", "中", "文",
             "中文", "日本語", "한국어", "\ud7ff", "\ue000", "\uf8ff", "\ufb01", "\ufeff", "\uffef",
             "\uffff", "\U00010000", "\U0001f600", "\U0001f600x", "\U0010ffff", "Ω", "ω", "A", "Z",
             "a", "z", "~"]


def test_non_ascii_keys_and_other_columns(spark, tmp_path):
    d = {}
    for i in range(3000):
        for base in NON_ASCII:
            d[f"{base}{i % 97}{base}"] = float(i)
    d.update({k: -1.0 for k in NON_ASCII})
    rows = [(i, k, v) for i, (k, v) in enumerate(d.items())]
    df = spark.createDataFrame(rows, "n long, word string, score double")
    # Spark's own sort is sharedmap's (and Python's) order: code points, not UTF-16
    assert [r.word for r in df.orderBy("word").select("word").collect()] == sorted(d)
    assert sharedmap_spark.write_set(df, tmp_path / "df", key="word", value="score", num_shards=5) == len(d)
    check_set(tmp_path / "df", d, 5)
    # key= alone: the value is the first other column
    sharedmap_spark.write_set(df, tmp_path / "n", key="word", num_shards=2)
    check_set(tmp_path / "n", {k: n for n, k, _ in rows}, 2)
    rdd = spark.sparkContext.parallelize(list(d.items()), 4)
    assert sharedmap_spark.write_set(rdd, tmp_path / "rdd", num_shards=4) == len(d)
    check_set(tmp_path / "rdd", d, 4)
    # bytes keys with high bytes: Spark compares binary unsigned, as sharedmap does
    b = {bytes([x, y]): x * 256 + y for x in range(256) for y in range(0, 256, 5)}
    b.update({bytes([x]): None for x in range(256)})
    bdf = spark.createDataFrame([(bytearray(k), v) for k, v in b.items()], "k binary, v long")
    assert sharedmap_spark.write_set(bdf, tmp_path / "bytes", num_shards=4) == len(b)
    check_set(tmp_path / "bytes", b, 4)


def test_an_rdd_of_int_pairs_and_replacing(spark, tmp_path):
    pairs = [(i * 1_000_003 % 99_991 - 50_000, str(i)) for i in range(5000)]
    pairs += [(-(2**63), "min"), (2**63 - 1, "max")]
    rdd = spark.sparkContext.parallelize(pairs, 3)
    path = tmp_path / "s"
    sharedmap_spark.write_set(rdd, path, num_shards=3)
    m = check_set(path, dict(pairs), 3)
    old = dict(m)
    before = files(path)
    with pytest.raises(FileExistsError):
        sharedmap_spark.write_set(rdd, path)
    assert files(path) == before
    small = spark.sparkContext.parallelize([(1, "one"), (2, "two")], 2)
    assert sharedmap_spark.write_set(small, path, force=True) == 2
    assert m == old  # the old version until refresh()
    assert m.refresh() and m == {1: "one", 2: "two"}
    check_set(path, {1: "one", 2: "two"}, 2, only=False)
    # the files of this version and of the one it replaced (readers may still be opening it)
    assert len(files(path)) == 1 + len(sharedmap.shards(m)) + len(before) - 1


def test_numpy_values(spark, tmp_path):
    np = pytest.importorskip("numpy")
    keys = [i * 1_000_003 - 5 * 10**9 for i in range(1000)]
    d = {k: float(k) / 7 for k in keys}
    # numpy scalars (as from pandas) become Python values
    rdd = spark.sparkContext.parallelize(keys, 2).map(lambda k: (np.int64(k), np.float64(k) / 7))
    assert sharedmap_spark.write_set(rdd, tmp_path / "np", num_shards=2) == len(d)
    check_set(tmp_path / "np", d, 2)


def test_empty_partitions_and_empty_input(spark, tmp_path):
    # three distinct keys, many rows, eight range partitions: the empty ones make no shard
    df = spark.createDataFrame([(k, 1) for k in "abc" for _ in range(100)], "k string, v long")
    assert sharedmap_spark.write_set(df, tmp_path / "few", num_shards=8) == 3
    check_set(tmp_path / "few", {"a": 1, "b": 1, "c": 1}, 3)
    empty = spark.createDataFrame([], "k string, v long")
    assert sharedmap_spark.write_set(empty, tmp_path / "empty", num_shards=4) == 0
    m = check_set(tmp_path / "empty", {}, 1)
    assert len(sharedmap.shards(m)) == 1


def test_a_failed_job_leaves_nothing(spark, tmp_path, monkeypatch):
    staged = []  # what the failed jobs had written when write_set cleaned up after them
    abandon = sharedmap_spark.abandon

    def spy(path, generation, staging=None):
        staged.append(files(staging) if staging is not None and os.path.isdir(staging) else None)
        abandon(path, generation, staging=staging)

    monkeypatch.setattr(sharedmap_spark, "abandon", spy)
    bad = spark.sparkContext.parallelize([(f"k{i}", [i] if i == 777 else i) for i in range(1000)], 4)
    with pytest.raises(Exception, match="values must be"):
        sharedmap_spark.write_set(bad, tmp_path / "s", num_shards=4)
    assert os.listdir(tmp_path / "s") == []
    # the same over an existing set, with force=True: the old set stays whole
    path = tmp_path / "set"
    good = {f"k{i:05d}": i for i in range(100)}
    sharedmap_spark.write_set(spark.createDataFrame(list(good.items()), "k string, v long"), path,
                              num_shards=2)
    before = files(path)
    # a list value in one row of the last partition; the other partitions' shards get written
    rows = [(f"k{i:05d}", [i] if i == 7000 else None) for i in range(8000)]
    df = spark.createDataFrame(rows, "k string, v array<long>")
    with pytest.raises(Exception, match="TypeError: values must be"):
        sharedmap_spark.write_set(df, path, num_shards=4, force=True)
    assert files(path) == before
    check_set(path, good, 2)
    # the failures came after other tasks had written their shards: those were removed
    assert len(staged) == 2 and any(staged), staged
    # keys out of sharedmap's domain: a null key fails in the task, a double key column before any job
    nulls = spark.createDataFrame([("a", 1), (None, 2)], "k string, v long")
    with pytest.raises(Exception, match="TypeError: keys must be"):
        sharedmap_spark.write_set(nulls, tmp_path / "nulls", num_shards=2)
    assert files(tmp_path / "nulls") == []
    with pytest.raises(TypeError, match="double"):
        sharedmap_spark.write_set(spark.createDataFrame([(1.5, 1)], "k double, v long"), tmp_path / "d")
    with pytest.raises(ValueError, match="no column"):
        sharedmap_spark.write_set(nulls, tmp_path / "d", key="nope")
    with pytest.raises(TypeError, match="DataFrame or RDD"):
        sharedmap_spark.write_set([("a", 1)], tmp_path / "d")
    assert not os.path.exists(tmp_path / "d")


def test_collated_string_keys_are_refused(spark, tmp_path):
    try:
        from pyspark.sql.functions import collate
    except ImportError:
        pytest.skip("this Spark has no collations")
    df = spark.createDataFrame([("a", 1), ("B", 2)], "k string, v long")
    df = df.select(collate("k", "UTF8_LCASE").alias("k"), "v")
    with pytest.raises(ValueError, match="collation"):
        sharedmap_spark.write_set(df, tmp_path / "c")
    assert not os.path.exists(tmp_path / "c")
