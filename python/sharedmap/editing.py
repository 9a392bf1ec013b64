"""Edits of a published map, published as small delta layers (docs/FORMAT.md section 13).

``sharedmap.edit(name)`` begins an edit of the map ``name`` (``path=`` for a snapshot file):
a :class:`Editor`, a ``MutableMapping`` that reads through to the current version and
records sets and deletions.  Leaving its ``with`` block normally publishes the changes
atomically under the same name, as a delta over the current base, in time proportional to
the changes (the delta is rewritten with the new changes merged in, the base never); an
exception in the block discards them.  Readers that attach afterwards see base and delta as
one map; readers already attached move to it with ``refresh()``, as after any republish.

When the delta would pass ``compact_at`` times the base's entries (default 0.1), the commit
merges base and delta into one plain snapshot instead (the streaming writer's k-way merge, in
bounded memory), and the old base goes.  :func:`compact` does that at once.

Editors of one name serialise: an edit holds the name's lock from ``edit()`` to its commit
or discard (``wait=False``: ``BlockingIOError`` instead of waiting).  A publisher that does not
edit (``share(force=True)``, ``save(force=True)``, ``publish(force=True)``) and replaces the
name meanwhile makes the commit raise :class:`ConflictError`, publishing nothing: no update
is ever lost silently.
"""
from collections import abc as _abc

from ._sharedmap import _Edit


class Editor(_Edit, _abc.MutableMapping):  # type: ignore[misc]
    """An edit of a published map or snapshot file: a ``MutableMapping`` over its current
    version.  Made by :func:`edit`; see the module's documentation.

    ``commit()`` publishes (returns True when it compacted), ``discard()`` drops the
    changes; as a context manager, the block's normal end commits and an exception
    discards.  ``changes`` counts the keys set or deleted, ``compacted`` says what the
    commit wrote.  Iteration is in key order, as a reader's.
    """

    __slots__ = ()


def edit(name=None, *, path=None, compact_at=0.1, wait=True, memory_limit=None, temp_dir=None):
    """Begin an edit of the published map ``name``, or of the snapshot file ``path=``.

    ``compact_at``: the commit compacts when the delta would hold more entries than this
    fraction of the base's (``0`` compacts on every commit with changes, ``None`` never on its
    own).  ``wait=False`` raises ``BlockingIOError`` when another editor holds the name
    instead of waiting for it.  ``memory_limit`` and ``temp_dir`` are the compaction's, as
    :func:`sharedmap.write` takes them.  A map set cannot be edited (ValueError); a name with
    nothing published under it is a ``FileNotFoundError``.
    """
    return Editor(name, path=path, compact_at=compact_at, wait=wait, memory_limit=memory_limit,
                  temp_dir=temp_dir)


def compact(name=None, *, path=None, wait=True, memory_limit=None, temp_dir=None):
    """Merge the map ``name`` (or the file ``path=``) and its delta into one plain snapshot,
    published atomically under the same name; the old base is removed once nothing names it.
    A map without a delta is rewritten as it is.  Returns the number of entries."""
    with Editor(name, path=path, compact=True, wait=wait, memory_limit=memory_limit,
                temp_dir=temp_dir) as e:
        n = len(e)
    return n
