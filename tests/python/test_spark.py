"""Map sets written with PySpark (issue 13), in local mode: a real JVM and real Python worker
processes write the shards, the driver the manifest; the set equals a dict of the same pairs,
non-ASCII keys come out in sharedmap's order, and a failed job leaves nothing."""
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


def test_a_dataframe(spark, tmp_path):
    d = {f"k{i * 7919 % 20000:05d}": i for i in range(20000)}
    df = spark.createDataFrame(list(d.items()), ["key", "value"]).repartition(3)
    assert sharedmap_spark.write_set(df, str(tmp_path / "s"), num_shards=4) == len(d)
    m = sharedmap.open(tmp_path / "s")
    assert m == d and list(m) == sorted(d)
    shards = sharedmap.shards(m)
    assert 2 <= len(shards) <= 4 and sum(s.entries for s in shards) == len(d)
    m.verify()


def test_non_ascii_keys_and_other_columns(spark, tmp_path):
    words = ["a", "z", "é", "ö", "ÿ", "Ā", "中", "文", "😀", "\uffff", "\U0010ffff", "Z", "~"]
    d = {f"{w}{i}": float(i) for i, w in enumerate(words * 50)}
    rows = [(i, k, v) for i, (k, v) in enumerate(d.items())]
    df = spark.createDataFrame(rows, ["n", "word", "score"])
    sharedmap_spark.write_set(df, tmp_path / "s", key="word", value="score", num_shards=5)
    m = sharedmap.open(tmp_path / "s")
    assert m == d and list(m) == sorted(d)  # Spark's string order is sharedmap's (code points)


def test_an_rdd_of_int_pairs_and_replacing(spark, tmp_path):
    pairs = [(i * 1_000_003 % 99_991 - 50_000, str(i)) for i in range(5000)]
    rdd = spark.sparkContext.parallelize(pairs, 3)
    sharedmap_spark.write_set(rdd, tmp_path / "s", num_shards=3)
    m = sharedmap.open(tmp_path / "s")
    assert m == dict(pairs) and list(m) == sorted(dict(pairs))
    with pytest.raises(FileExistsError):
        sharedmap_spark.write_set(rdd, tmp_path / "s")
    small = spark.sparkContext.parallelize([(1, "one"), (2, "two")], 2)
    assert sharedmap_spark.write_set(small, tmp_path / "s", force=True) == 2
    assert m.refresh() and m == {1: "one", 2: "two"}


def test_a_failed_job_leaves_nothing(spark, tmp_path):
    bad = spark.sparkContext.parallelize([(f"k{i}", [i] if i == 777 else i) for i in range(1000)], 4)
    with pytest.raises(Exception, match="values must be"):
        sharedmap_spark.write_set(bad, tmp_path / "s", num_shards=4)
    assert os.listdir(tmp_path / "s") == []
    with pytest.raises(TypeError, match="DataFrame or RDD"):
        sharedmap_spark.write_set([("a", 1)], tmp_path / "t")
