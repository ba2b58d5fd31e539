"""Rename rules between parameter namings: nested key-prefix templates whose ``#`` segments match any block index."""
from dataclasses import dataclass

INDEX = '#'  # template segment matching any module index (a run of digits), copied to the other side in order


@dataclass(frozen=True)
class Rename:
    """Rename the key prefix ``source`` to ``target``; ``inner`` renames the rest of the key (empty: rest unchanged).

    Prefixes are dotted templates whose :data:`INDEX` segments match any module index, e.g.
    ``Rename('RRDB_trunk.#', 'body.#', inner)`` turns ``RRDB_trunk.3.RDB1.conv1.weight`` into ``body.3.`` followed by
    ``inner`` applied to ``RDB1.conv1.weight``.
    """
    source: str
    target: str
    inner: tuple = ()

    def __post_init__(self):
        if self.source.split('.').count(INDEX) != self.target.split('.').count(INDEX):
            raise ValueError(f'Rename {self.source!r} -> {self.target!r}: both sides need the same index segments.')

    def inverted(self):
        """The rename from ``target`` back to ``source``."""
        return Rename(self.target, self.source, tuple(rename.inverted() for rename in self.inner))

    def apply(self, segments):
        """Rename a key given as its list of segments; None if ``source`` is not a prefix (or ``inner`` fails)."""
        pattern = self.source.split('.')
        head = segments[:len(pattern)]
        if len(head) < len(pattern) or not all(segment.isdigit() if want == INDEX else segment == want
                                               for want, segment in zip(pattern, head)):
            return None
        indices = iter(segment for want, segment in zip(pattern, head) if want == INDEX)
        target = [next(indices) if segment == INDEX else segment for segment in self.target.split('.')]
        rest = segments[len(pattern):]
        if self.inner:
            rest = rename_key('.'.join(rest), self.inner)
            if rest is None:
                return None
            rest = rest.split('.')
        return '.'.join(target + rest)


def rename_key(key, renames):
    """Rename ``key`` with the one rule of ``renames`` that matches it.

    Args:
        key (str): Parameter name.
        renames (tuple[Rename]): Rules; at most one may match any key.

    Returns:
        str | None: The new name, or None if no rule matches.
    """
    results = [renamed for renamed in (rename.apply(key.split('.')) for rename in renames) if renamed is not None]
    if len(results) > 1:
        raise ValueError(f'Ambiguous rename table: {key!r} becomes each of {results}.')
    return results[0] if results else None


def renamed_under(prefix, renames):
    """The rules ``renames`` with ``prefix`` added to every source prefix."""
    return tuple(Rename(f'{prefix}.{rename.source}', rename.target, rename.inner) for rename in renames)


def unchanged(*names):
    """Rules keeping each of ``names`` (and everything below it) unchanged."""
    return tuple(Rename(name, name) for name in names)
