"""Which paths a .dockerignore keeps out of a build context, decided as Docker decides
it, so tests can ask about paths rather than grep the file. The rules
(https://docs.docker.com/build/concepts/context/#dockerignore-files): a line starting
with `#` is a comment; each pattern is trimmed and cleaned (Go's filepath.Clean) and a
leading `/` dropped; Go's filepath.Match globbing (`*` and `?` stop at `/`) plus `**`
for any number of directories; `!` re-includes; the last matching line decides; a
pattern that matches a parent directory excludes everything under it. The matching is
a port of moby/patternmatcher's regular-expression translation and its
MatchesOrParentMatches, which BuildKit and the docker CLI use.
"""

import posixpath
import re
from pathlib import Path


def _clean(pattern: str) -> str:
    cleaned = posixpath.normpath(pattern)
    return cleaned[1:] if len(cleaned) > 1 and cleaned.startswith("/") else cleaned


def _regex(pattern: str) -> re.Pattern:
    """moby/patternmatcher's translation of one cleaned pattern (separator `/`)."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
            out += ".*" if i == len(pattern) else "(.*/)?"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch in "[]":
            out += ch
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


class DockerIgnore:
    def __init__(self, text: str):
        self.rules = []  # (exclusion?, regex)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            self.rules.append((exception, _regex(_clean(line[1:] if exception else line))))

    @classmethod
    def of(cls, context: Path) -> "DockerIgnore":
        path = Path(context) / ".dockerignore"
        return cls(path.read_text() if path.exists() else "")

    def excludes(self, path: str) -> bool:
        """Whether `path` (relative to the context root, `/`-separated) stays out."""
        path = posixpath.normpath(path)
        parents = path.split("/")[:-1]
        candidates = [path] + ["/".join(parents[: i + 1]) for i in range(len(parents))]
        excluded = False
        for exception, regex in self.rules:
            if exception != excluded:
                continue  # an exclusion already holds, or an exception has nothing to undo
            if any(regex.match(c) for c in candidates):
                excluded = not exception
        return excluded
