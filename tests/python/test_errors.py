"""The exception classes (issue 11): every library error code raises the class SM_ERROR_MAP names
for it, each class is also the built-in exception that code raised before (so `except ValueError`
keeps catching a corrupt snapshot), and each carries .code and the map's name or file's path."""
import errno
import os

import pytest

import sharedmap
from sharedmap import _sharedmap

# The class of every code, and the built-in it must also be: written out here, independently of
# the list in sharedmap.h, so that a code added there without a decision here fails this test.
EXPECTED = {
    "SM_NOTFOUND": (KeyError, KeyError),
    "SM_EBADMAGIC": (sharedmap.NotASnapshotError, ValueError),
    "SM_EENDIAN": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_EVERSION": (sharedmap.UnsupportedVersionError, ValueError),
    "SM_EFEATURE": (sharedmap.UnsupportedVersionError, ValueError),
    "SM_EHEADER": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_ETRUNCATED": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_ECORRUPT": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_ECHECKSUM": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_EKEYKIND": (sharedmap.KeyKindError, TypeError),
    "SM_EUTF8": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_ENAME": (sharedmap.InvalidNameError, ValueError),
    "SM_ETOOBIG": (sharedmap.TooLargeError, OverflowError),
    "SM_ETYPE": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_ENOTSNAPSHOT": (sharedmap.NotASnapshotError, ValueError),
    "SM_ESYMLINK": (sharedmap.SymlinkError, OSError),
    "SM_EORDER": (sharedmap.OrderError, ValueError),
    "SM_EMANIFEST": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_ESHARD": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_EBASE": (sharedmap.CorruptSnapshotError, ValueError),
    "SM_ECONFLICT": (sharedmap.ConflictError, sharedmap.Error),  # no built-in said it before
}


def test_every_code_is_in_the_table():
    assert sorted(_sharedmap.ERROR_CODES) == sorted(EXPECTED)


@pytest.mark.parametrize("symbol", sorted(EXPECTED))
def test_each_code_raises_its_class(symbol):
    code = _sharedmap.ERROR_CODES[symbol]
    cls, builtin = EXPECTED[symbol]
    exc = _sharedmap._error(code, "some-map")
    assert type(exc) is cls
    assert isinstance(exc, builtin)
    assert "some-map" in str(exc)
    if cls is not KeyError:
        assert isinstance(exc, sharedmap.Error)
        assert (exc.code, exc.name, exc.path) == (code, "some-map", None)
    exc = _sharedmap._error(code, None, "/some/file")
    if cls is not KeyError:
        assert (exc.code, exc.name, exc.path) == (code, None, "/some/file")


def test_the_hierarchy():
    for cls in (
        sharedmap.CorruptSnapshotError,
        sharedmap.UnsupportedVersionError,
        sharedmap.KeyKindError,
        sharedmap.InvalidNameError,
        sharedmap.TooLargeError,
        sharedmap.SymlinkError,
        sharedmap.OrderError,
        sharedmap.ConflictError,
    ):
        assert cls.__bases__[0] is sharedmap.Error
        assert cls.__module__ == "sharedmap"
    assert sharedmap.NotASnapshotError.__bases__ == (sharedmap.CorruptSnapshotError,)
    assert sharedmap.Error.__bases__ == (Exception,)
    e = sharedmap.Error("made by hand")
    assert (e.code, e.name, e.path) == (None, None, None)


def test_os_failures_stay_oserror_subclasses_with_errno_and_filename(tmp_path):
    exc = _sharedmap._error(-errno.ENOENT, "gone")
    assert type(exc) is FileNotFoundError and exc.errno == errno.ENOENT and exc.filename == "gone"
    with pytest.raises(FileNotFoundError) as e:
        sharedmap.open(tmp_path / "missing.snap")
    assert e.value.filename == str(tmp_path / "missing.snap")
    assert not isinstance(e.value, sharedmap.Error)


# ---- real triggers


def test_a_corrupt_snapshot_is_a_corruptsnapshoterror_and_still_a_valueerror():
    data = bytearray(sharedmap.rbtree(a=1, b="two").dump())
    data[-1] ^= 0xFF
    try:
        sharedmap.loads(bytes(data)).verify()
    except ValueError as e:  # the old way of catching it
        assert isinstance(e, sharedmap.CorruptSnapshotError)
        assert e.code in (_sharedmap.ERROR_CODES["SM_ECHECKSUM"], _sharedmap.ERROR_CODES["SM_ECORRUPT"])
    else:
        pytest.fail("a flipped byte went unnoticed")


def test_bytes_that_are_no_snapshot_are_a_notasnapshoterror():
    with pytest.raises(sharedmap.NotASnapshotError) as e:
        sharedmap.loads(b"x" * 200)
    assert e.value.code == _sharedmap.ERROR_CODES["SM_EBADMAGIC"]


def test_a_newer_format_version_is_an_unsupportedversionerror():
    data = sharedmap.rbtree(a=1).dump()
    with pytest.raises(sharedmap.UnsupportedVersionError) as e:
        sharedmap.loads(data[:12] + b"\x63\x00" + data[14:])
    assert e.value.code == _sharedmap.ERROR_CODES["SM_EVERSION"]


def test_mixing_key_kinds_is_a_keykinderror_and_still_a_typeerror():
    w = sharedmap.rbtree(a=1)
    with pytest.raises(TypeError) as e:
        w[b"b"] = 2
    assert isinstance(e.value, sharedmap.KeyKindError)
    assert e.value.code == _sharedmap.ERROR_CODES["SM_EKEYKIND"]
    assert "str" in str(e.value) and "bytes" in str(e.value)
    m = sharedmap.loads(w.dump())
    with pytest.raises(sharedmap.KeyKindError):
        m[b"a"]


def test_a_bad_name_is_an_invalidnameerror_naming_it():
    with pytest.raises(sharedmap.InvalidNameError) as e:
        sharedmap.rbtree(a=1).share("no/slash")
    assert e.value.name == "no/slash" and e.value.path is None
    with pytest.raises(ValueError):
        sharedmap.sharedmap("")


def test_errors_of_a_map_carry_its_name_and_of_a_file_its_path(name, tmp_path):
    w = sharedmap.rbtree({f"k{i}": i for i in range(100)})
    w.share(name)
    path = tmp_path / "m.snap"
    w.save(path)
    for target in (f"/dev/shm/sharedmap.{name}", path):
        with open(target, "r+b") as f:  # a byte of the records, so only verify() notices
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 0x01]))
    with pytest.raises(sharedmap.CorruptSnapshotError) as e:
        sharedmap.sharedmap(name).verify()
    assert (e.value.name, e.value.path) == (name, None)
    with pytest.raises(sharedmap.CorruptSnapshotError) as e:
        sharedmap.open(path).verify()
    assert e.value.name is None and os.fspath(e.value.path) == os.fspath(path)


def test_a_symlink_is_a_symlinkerror_with_errno_eloop(tmp_path):
    target = tmp_path / "real.snap"
    sharedmap.rbtree(a=1).save(target)
    link = tmp_path / "link.snap"
    link.symlink_to(target)
    with pytest.raises(OSError) as e:
        sharedmap.open(link)
    assert isinstance(e.value, sharedmap.SymlinkError)
    assert e.value.errno == errno.ELOOP
    assert os.fspath(e.value.filename) == os.fspath(link)
