"""Which .debs the card needs: the Depends/Pre-Depends closure of the roots, minus what the base has.

No I/O: verified index entries (``Candidate``) and the base's dpkg status in, a sorted list out. It is
what ``apt-get install --no-install-recommends ROOTS`` would add to the base, decided at build time so
the card can install offline; apt on the camera then checks the same graph again (and Breaks/Conflicts,
which are not looked at here) before it touches anything.

Rules, apt's where it matters:
* a relation already met by an installed package (or something it Provides) needs nothing;
* ``a | b``: an installed alternative wins, then one already chosen, then the first one available;
* of several versions, the highest that meets the constraint (one version per package);
* a versioned relation an installed package does not meet pulls in the newer version (an upgrade);
* virtual packages through Provides (versioned Provides meet versioned relations);
* ``pkg:any`` / ``pkg:native`` are ``pkg`` (one architecture here).
Every chosen package's relations are checked again against the final set, so a later choice can never
silently break an earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cmp_to_key

from debian import deb822
from debian.debian_support import version_compare

from .aptbase import Installed
from .tools import ImageError

ROOTS = ("python3-picamera2",)

_OPS = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}


@dataclass(frozen=True)
class Candidate:
    """One package version from a verified index, with where to get it and what it must hash to."""

    package: str
    version: str
    architecture: str
    depends: str  # Pre-Depends and Depends, comma-joined
    provides: str
    filename: str  # relative to base_uri
    size: int
    sha256: str
    base_uri: str
    stanza: str  # the index paragraph as published, for the card's own Packages file

    @property
    def deb_name(self) -> str:
        """Debian's file name convention; an epoch's ':' is written %3a as in the archive."""
        return f"{self.package}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"

    @property
    def id(self) -> str:
        return f"{self.package} {self.version}"


by_version = cmp_to_key(lambda a, b: version_compare(a.version, b.version))
Relation = dict  # python-debian's {'name', 'version': (op, ver) | None, 'archqual', ...}


def relations(field: str) -> list[list[Relation]]:
    return deb822.PkgRelation.parse_relations(field) if field.strip() else []


def show(rel: Relation) -> str:
    v = rel.get("version")
    return f"{rel['name']} ({v[0]} {v[1]})" if v else rel["name"]


def meets(version: str | None, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    if version is None:  # an unversioned Provides meets only unversioned relations
        return False
    op, want = constraint
    return _OPS[op](version_compare(version, want))


def _provided(field: str) -> list[tuple[str, str | None]]:
    out = []
    for group in relations(field):
        for rel in group:
            v = rel.get("version")
            out.append((rel["name"], v[1] if v and v[0] == "=" else None))
    return out


class Resolver:
    def __init__(self, candidates: Iterable[Candidate], installed: Mapping[str, Installed]) -> None:
        self.installed = dict(installed)
        self.by_name: dict[str, list[Candidate]] = {}
        self.providers: dict[str, list[tuple[Candidate, str | None]]] = {}
        seen: set[tuple[str, str]] = set()
        for c in candidates:
            if (c.package, c.version) in seen:  # the same version from a second source: first wins
                continue
            seen.add((c.package, c.version))
            self.by_name.setdefault(c.package, []).append(c)
            for name, ver in _provided(c.provides):
                self.providers.setdefault(name, []).append((c, ver))
        for versions in self.by_name.values():
            versions.sort(key=by_version, reverse=True)
        self.chosen: dict[str, Candidate] = {}

    # -- what the card will have: the base, with chosen packages replacing (upgrading) base ones -----

    def _present(self, rel: Relation) -> bool:
        name, constraint = rel["name"], rel.get("version")
        if name in self.chosen:
            if meets(self.chosen[name].version, constraint):
                return True
        elif name in self.installed and meets(self.installed[name].version, constraint):
            return True
        for pkg in self.installed.values():
            if pkg.package not in self.chosen and pkg.provides:
                if any(n == name and meets(v, constraint) for n, v in _provided(pkg.provides)):
                    return True
        return any(
            n == name and meets(v, constraint) for c in self.chosen.values() for n, v in _provided(c.provides)
        )

    def _available(self, rel: Relation) -> Candidate | None:
        name, constraint = rel["name"], rel.get("version")
        if name in self.chosen:  # one version per package: the chosen one or nothing
            return None
        for c in self.by_name.get(name, []):
            if meets(c.version, constraint):
                return c
        usable = [c for c, v in self.providers.get(name, []) if meets(v, constraint)]
        if not usable:
            return None
        first = min(c.package for c in usable)  # deterministic: by name, then the highest version
        return max((c for c in usable if c.package == first), key=by_version)

    def resolve(self, roots: Iterable[str] = ROOTS) -> list[Candidate]:
        queue: list[tuple[Candidate, str]] = []
        for root in roots:
            found = self._available({"name": root, "version": None})
            if found is None:
                raise ImageError(
                    f"no apt source of the base image offers {root}: add the Raspberry Pi archive "
                    "(archive.raspberrypi.com) to the base, or build with --no-camera-stack"
                )
            if root not in self.installed or version_compare(found.version, self.installed[root].version) > 0:
                self._choose(found, queue, root)
        while queue:
            pkg, chain = queue.pop(0)
            for group in relations(pkg.depends):
                group = [dict(r, name=r["name"].split(":")[0]) for r in group]
                if any(self._present(r) for r in group):
                    continue
                pick = next((c for c in map(self._available, group) if c is not None), None)
                if pick is None:
                    raise ImageError(
                        f"{chain} needs {' | '.join(map(show, group))}, which no apt source of the base "
                        "image offers in a usable version"
                    )
                self._choose(pick, queue, f"{chain} -> {pick.package}")
        self._check()
        return sorted(self.chosen.values(), key=lambda c: c.package)

    def _choose(self, c: Candidate, queue: list[tuple[Candidate, str]], chain: str) -> None:
        self.chosen[c.package] = c
        queue.append((c, chain))

    def _check(self) -> None:
        for c in self.chosen.values():
            for group in relations(c.depends):
                group = [dict(r, name=r["name"].split(":")[0]) for r in group]
                if not any(self._present(r) for r in group):
                    raise ImageError(
                        f"cannot install {c.id}: it needs {' | '.join(map(show, group))}, and the "
                        "versions chosen for other packages do not meet that"
                    )


def closure(
    candidates: Iterable[Candidate], installed: Mapping[str, Installed], roots: Iterable[str] = ROOTS
) -> list[Candidate]:
    return Resolver(candidates, installed).resolve(roots)
