"""The pinned MicroPython source (Debian's ``micropython 1.25.0+ds-1`` source package), fetched once into
the cache with a private apt configuration: a ``.sources`` file of our own pointing at the mirror this
machine already uses, suite trixie, and apt state/cache directories of our own. The system's apt sources
are never touched. ``.ci/install-system-deps`` does the same in shell; this is the path for users without
make, and the error they get says which command installs it.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from ..errors import TwinUnavailable

MICROPYTHON_PACKAGE = "micropython"
MICROPYTHON_VERSION = "1.25.0+ds-1"
MICROPYTHON_TREE = "micropython-1.25.0"          # the directory the .orig.tar.xz unpacks to
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
INSTALL_COMMAND = "sh .ci/install-system-deps (or `make setup`)"
TOOLCHAIN_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi")


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/edgesim``: outside the checkout, shared by every clone."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgesim"


def source_root() -> Path:
    return cache_dir() / "src" / MICROPYTHON_TREE


def source_ready() -> bool:
    """The extracted tree is complete (the qemu port's Makefile and the py core are there)."""
    root = source_root()
    return (root / "ports" / "qemu" / "Makefile").is_file() and (root / "py" / "py.mk").is_file()


def toolchain_missing() -> list[str]:
    """What of the cross toolchain is missing (empty when arm-none-eabi-gcc can build for the twins)."""
    missing = []
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        missing.append("arm-none-eabi-gcc (Debian gcc-arm-none-eabi)")
    else:
        r = subprocess.run([gcc, "-print-file-name=libc_nano.a"], capture_output=True, text=True)
        if not os.path.isabs(r.stdout.strip()):
            missing.append("newlib for arm-none-eabi (Debian libnewlib-arm-none-eabi)")
    if shutil.which("make") is None:
        missing.append("make")
    return missing


def system_mirror(etc_apt: str = "/etc/apt") -> tuple[str, str]:
    """The Debian mirror URI and keyring this machine's apt already uses (deb822 .sources first, not the
    security archive; then sources.list; then deb.debian.org)."""
    for path in sorted(glob.glob(os.path.join(etc_apt, "sources.list.d", "*.sources"))):
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+?)\s*$", stanza, re.M))
            uris = fields.get("URIs", "").split()
            suites = fields.get("Suites", "")
            if uris and "security" not in suites and "/debian" in uris[0]:
                return uris[0], fields.get("Signed-By", DEFAULT_KEYRING)
    try:
        for line in Path(etc_apt, "sources.list").read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", line)
            if m:
                return m.group(1), DEFAULT_KEYRING
    except OSError:
        pass
    return DEFAULT_MIRROR, DEFAULT_KEYRING


def _say(msg: str) -> None:
    print(f"edgesim: {msg}", file=sys.stderr, flush=True)


def fetch_source(quiet: bool = False) -> Path:
    """Download and extract the pinned source package into the cache (no-op when it is there).

    Raises :class:`TwinUnavailable` naming the command that installs it when apt cannot fetch it.
    """
    if source_ready():
        return source_root()
    if shutil.which("apt-get") is None:
        raise TwinUnavailable(f"MicroPython {MICROPYTHON_VERSION} source is not in {source_root()} and there "
                              f"is no apt-get here to fetch it: run {INSTALL_COMMAND} on a Debian machine")
    apt_dir = cache_dir() / "apt"
    src_dir = cache_dir() / "src"
    for d in (apt_dir / "lists" / "partial", apt_dir / "cache" / "archives" / "partial", src_dir):
        d.mkdir(parents=True, exist_ok=True)
    uri, keyring = system_mirror()
    sources = apt_dir / "edgesim-trixie-src.sources"
    sources.write_text(f"Types: deb-src\nURIs: {uri}\nSuites: trixie\nComponents: main\nSigned-By: {keyring}\n",
                       encoding="utf-8")
    opts = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o", f"Dir::Cache={apt_dir / 'cache'}",
            "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "APT::Sandbox::User=_apt", "-q"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not quiet:
        _say(f"fetching the MicroPython {MICROPYTHON_VERSION} source package from {uri} (trixie, private apt "
             f"configuration in {apt_dir})")
    steps = (["apt-get", *opts, "update"],
             ["apt-get", *opts, "source", "--download-only", f"{MICROPYTHON_PACKAGE}={MICROPYTHON_VERSION}"])
    for cmd in steps:
        r = subprocess.run(cmd, cwd=src_dir, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise TwinUnavailable(f"could not fetch the MicroPython {MICROPYTHON_VERSION} source ({' '.join(cmd[:1] + cmd[-2:])}"
                                  f": {last}); run {INSTALL_COMMAND} when the Debian mirror is reachable")
    tarballs = sorted(src_dir.glob(f"{MICROPYTHON_PACKAGE}_*.orig.tar.xz"))
    if not tarballs:
        raise TwinUnavailable(f"apt-get source left no {MICROPYTHON_PACKAGE}_*.orig.tar.xz in {src_dir}; "
                              f"run {INSTALL_COMMAND}")
    tmp = src_dir / f".extract-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(tarballs[-1]) as tar:
        tar.extractall(tmp, filter="tar")
    target = source_root()
    if not source_ready():
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp / MICROPYTHON_TREE, target)
    shutil.rmtree(tmp, ignore_errors=True)
    if not source_ready():
        raise TwinUnavailable(f"{tarballs[-1]} did not unpack to {target}; run {INSTALL_COMMAND}")
    return target


def require_source(fetch: bool = True) -> Path:
    """The extracted source tree; fetched on first use when ``fetch``. TwinUnavailable says how to get it."""
    if source_ready():
        return source_root()
    if not fetch:
        raise TwinUnavailable(f"MicroPython {MICROPYTHON_VERSION} source is not in {source_root()}: "
                              f"run {INSTALL_COMMAND}")
    return fetch_source()


def require_toolchain() -> None:
    missing = toolchain_missing()
    if missing:
        raise TwinUnavailable(f"cannot build twin firmware: {', '.join(missing)} missing: run {INSTALL_COMMAND} "
                              f"(apt-get install {' '.join(TOOLCHAIN_PACKAGES)})")
