"""Compare an environment's `pip freeze` with a `make lock` file: exit 1 and name the
differences unless the installed packages are exactly the locked ones (those whose environment
markers hold for the given Python version on Linux). Used by docker/image-test.sh.

    python3 docker/lock_freeze.py requirements.lock freeze.txt 3.11.2
"""

from __future__ import annotations

import re
import sys

try:
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name
except ImportError:  # pip carries its own copy
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.utils import canonicalize_name

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;([^\\]*))?")


def locked(text: str, python_version: str) -> dict[str, str]:
    environment = {
        "python_version": ".".join(python_version.split(".")[:2]),
        "python_full_version": python_version,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    pins = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker and not Marker(marker.strip()).evaluate(environment):
            continue
        pins[canonicalize_name(name)] = version
    return pins


def installed(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        if line.startswith(("#", "-")):  # comments, editable installs
            continue
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = version
    return pins


def main(lock_path: str, freeze_path: str, python_version: str) -> int:
    want = locked(open(lock_path, encoding="utf-8").read(), python_version)
    have = installed(open(freeze_path, encoding="utf-8").read())
    problems = [f"missing {name}=={want[name]}" for name in sorted(set(want) - set(have))]
    problems += [f"not locked {name}=={have[name]}" for name in sorted(set(have) - set(want))]
    problems += [
        f"{name}: {have[name]} installed, {want[name]} locked"
        for name in sorted(set(want) & set(have))
        if want[name] != have[name]
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{len(have)} packages, exactly {lock_path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
