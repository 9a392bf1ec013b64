"""Fixtures of the Python tests: unique map names (removed afterwards) and a check that no test
leaves anything in /dev/shm.  Plain helpers are in support.py.
"""
import os

import pytest
from hypothesis import settings

import sharedmap
from support import SHM_DIR, my_shm_entries, unique_name

settings.register_profile("default", deadline=None, max_examples=60)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session", autouse=True)
def no_leftovers_in_shm():
    yield
    left = my_shm_entries()
    for path in left:
        os.unlink(path)
    assert left == [], f"tests left maps in {SHM_DIR}: {left}"


@pytest.fixture
def new_name():
    """A factory of unique map names; every map published under them is removed afterwards."""
    names = []

    def make(tag=""):
        name = unique_name(tag)
        names.append(name)
        return name

    yield make
    for name in names:
        sharedmap.rbtree.remove(name)


@pytest.fixture
def name(new_name):
    return new_name()
