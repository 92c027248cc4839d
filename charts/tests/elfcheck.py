"""What a Linux container needs of a binary, read from the binary itself (stdlib only):
is it an ELF executable at all (a macOS build is Mach-O and dies in the pod with
`exec format error`), for which CPU, with which program interpreter, and the newest
glibc symbol version it needs (its SHT_GNU_verneed entries named GLIBC_x.y: the
dynamic loader refuses to start a binary that needs a newer glibc than the image has).
Also the glibc of the base images the project's Dockerfiles use.

Formats: the ELF-64 header, program and section headers and the GNU version
requirements as the System V gABI and the LSB define them
(https://refspecs.linuxfoundation.org/LSB_5.0.0/LSB-Core-generic/LSB-Core-generic/symversion.html).
Little-endian 64-bit only: that is every kind node (amd64, arm64).
"""

import re
import struct
from dataclasses import dataclass
from pathlib import Path

PT_INTERP = 3
SHT_GNU_VERNEED = 0x6FFFFFFE
MACHINES = {62: "x86_64", 183: "aarch64"}
MACH_O_MAGICS = {b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe"}

# glibc of each base image the Dockerfiles may name, from the distribution's libc6
# package (https://packages.debian.org/<suite>/libc6, https://packages.ubuntu.com/<suite>/libc6);
# distroless images are built from Debian's packages of the suite they name.
BASE_IMAGE_GLIBC = {
    "debian:bullseye-slim": (2, 31),
    "debian:bookworm-slim": (2, 36),
    "debian:trixie-slim": (2, 41),
    "gcr.io/distroless/cc-debian12": (2, 36),
    "gcr.io/distroless/cc-debian13": (2, 41),
    "ubuntu:22.04": (2, 35),
    "ubuntu:24.04": (2, 39),
}


class NotElf(ValueError):
    """The file is not an ELF executable a Linux node can run."""


@dataclass(frozen=True)
class LinuxBinary:
    machine: str
    interpreter: str | None
    glibc_versions: frozenset

    @property
    def max_glibc(self) -> tuple[int, int] | None:
        """The newest GLIBC_x.y the binary needs, or None for a static binary."""
        return max(self.glibc_versions, default=None)


def parse_glibc(text: str) -> tuple[int, int]:
    """`2.36` (or `GLIBC_2.36`) as (2, 36)."""
    match = re.fullmatch(r"(?:GLIBC_)?(\d+)\.(\d+)(?:\.\d+)?", text)
    if not match:
        raise ValueError(f"not a glibc version: {text!r}")
    return int(match.group(1)), int(match.group(2))


def base_image_glibc(image: str) -> tuple[int, int]:
    """The glibc of a base image, by its name with or without tag and digest."""
    name = image.split("@", 1)[0]
    repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    for key in (name, repository):
        if key in BASE_IMAGE_GLIBC:
            return BASE_IMAGE_GLIBC[key]
    raise KeyError(f"{image}: glibc unknown; add it to BASE_IMAGE_GLIBC (charts/tests/elfcheck.py)")


def read(path: Path) -> LinuxBinary:
    data = Path(path).read_bytes()
    if data[:4] in MACH_O_MAGICS:
        raise NotElf(f"{path} is a Mach-O (macOS) binary, not ELF")
    if data[:4] != b"\x7fELF":
        raise NotElf(f"{path} is not an ELF binary (magic {data[:4]!r})")
    if data[4] != 2 or data[5] != 1:
        raise NotElf(f"{path} is not a little-endian 64-bit ELF")
    machine = struct.unpack_from("<H", data, 18)[0]
    return LinuxBinary(
        machine=MACHINES.get(machine, f"EM_{machine}"),
        interpreter=_interpreter(data),
        glibc_versions=frozenset(parse_glibc(v) for v in _needed_versions(data) if v.startswith("GLIBC_")),
    )


def _interpreter(data: bytes) -> str | None:
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == PT_INTERP:
            return data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    return None


def _sections(data: bytes) -> list[tuple]:
    """(type, offset, size, link, info) of every section header."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    headers = []
    for i in range(shnum):
        _, sh_type, _, _, offset, size, link, info = struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize)
        headers.append((sh_type, offset, size, link, info))
    return headers


def _needed_versions(data: bytes) -> list[str]:
    """Every version name in the binary's Verneed/Vernaux chains."""
    sections = _sections(data)
    names = []
    for sh_type, offset, _, link, count in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][1]
        entry = offset
        for _ in range(count):
            _, aux_count, _, aux, next_entry = struct.unpack_from("<HHIII", data, entry)
            at = entry + aux
            for _ in range(aux_count):
                _, _, _, name, next_aux = struct.unpack_from("<IHHII", data, at)
                end = data.index(b"\0", strtab + name)
                names.append(data[strtab + name:end].decode())
                at += next_aux
            entry += next_entry
    return names
