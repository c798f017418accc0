#!/usr/bin/env python3
"""The floor of a delta download from V1 to V2: V2's 4 KiB blocks that exist
nowhere in V1 (at any offset that is a multiple of 4 KiB), and the size of
their concatenation compressed with `gzip -9` and `zstd -19`. Also counts the
blocks that differ at the same offset, for comparison with position-based
delta schemes.

Usage: floor.py V1 V2 WORKDIR
Writes WORKDIR/novel.bin (the novel blocks, in V2 order) and prints
`key=value` lines: blocks, same_offset_differ, novel_blocks, novel_distinct,
novel_bytes, gzip9_bytes, zstd19_bytes.
"""

import hashlib
import os
import subprocess
import sys

BLOCK = 4096


def blocks(path):
    with open(path, "rb") as f:
        while True:
            b = f.read(BLOCK)
            if not b:
                return
            if len(b) < BLOCK:
                b = b + bytes(BLOCK - len(b))
            yield b


def key(b):
    return hashlib.blake2b(b, digest_size=16).digest()


def compressed_size(cmd, path):
    with open(path, "rb") as f:
        out = subprocess.run(cmd, stdin=f, stdout=subprocess.PIPE, check=True).stdout
    return len(out)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    v1, v2, work = sys.argv[1:]
    seen = {key(b) for b in blocks(v1)}
    total = same_differ = novel = 0
    distinct = set()
    out_path = os.path.join(work, "novel.bin")
    with open(out_path, "wb") as out:
        for a, b in zip(blocks(v1), blocks(v2)):
            total += 1
            if a != b:
                same_differ += 1
            k = key(b)
            if k not in seen:
                novel += 1
                distinct.add(k)
                out.write(b)
    if os.path.getsize(v1) != os.path.getsize(v2):
        sys.exit("floor.py: the images differ in size")
    print(f"blocks={total}")
    print(f"same_offset_differ={same_differ}")
    print(f"novel_blocks={novel}")
    print(f"novel_distinct={len(distinct)}")
    print(f"novel_bytes={novel * BLOCK}")
    print(f"gzip9_bytes={compressed_size(['gzip', '-9', '-n'], out_path)}")
    print(f"zstd19_bytes={compressed_size(['zstd', '-19', '-q', '-c'], out_path)}")


if __name__ == "__main__":
    main()
