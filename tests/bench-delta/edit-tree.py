#!/usr/bin/env python3
"""Turns a copy of the v1 root filesystem tree into v2: about 1% of the
files changed or added, the same way on every run (seeded choices).

- MODIFIED regular files (chosen among the non-empty ones, sorted by path)
  get a short edit inserted at a seeded offset in their first quarter, so the
  rest of the file shifts, as a rebuilt binary or a regenerated text does.
- NEW files, NEW_BYTES in all, are added under usr/lib/bench-v2/ and
  usr/share/bench-v2/: seeded random bytes, i.e. data that does not compress
  (like the compressed assets or firmware blobs an update adds), so the
  floor is not flattered by new data that happens to compress well.

Every touched file and directory gets the same fixed modification time.
Prints one line per change and a summary.

Usage: edit-tree.py TREE
"""

import os
import random
import stat
import sys

SEED = 20261121
MODIFIED = 100
NEW = 21
NEW_BYTES = 5 * 1024 * 1024
MTIME = 1700086400


def regular_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_size > 0 and st.st_nlink == 1:
                out.append((os.path.relpath(path, root), st.st_size))
    out.sort()
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    rng = random.Random(SEED)
    files = regular_files(root)
    total = len(files)

    changed = 0
    for rel, size in rng.sample(files, MODIFIED):
        path = os.path.join(root, rel)
        with open(path, "rb") as f:
            data = f.read()
        at = rng.randrange(0, max(1, size // 4))
        edit = b"v2:" + rng.randbytes(13)
        with open(path, "r+b") as f:
            f.write(data[:at] + edit + data[at:])
        os.utime(path, (MTIME, MTIME))
        changed += size - at
        print(f"modified {rel} ({size} bytes, edit at {at})")

    sizes = [rng.randrange(1, 100) for _ in range(NEW)]
    scale = NEW_BYTES / sum(sizes)
    sizes = [int(s * scale) for s in sizes]
    sizes[-1] += NEW_BYTES - sum(sizes)
    dirs = ["usr/lib/bench-v2", "usr/share/bench-v2"]
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for i, want in enumerate(sizes):
        rel = os.path.join(dirs[i % len(dirs)], f"new-{i:02d}.bin")
        path = os.path.join(root, rel)
        with open(path, "wb") as f:
            f.write(rng.randbytes(want))
        os.chmod(path, 0o644)
        os.utime(path, (MTIME, MTIME))
        print(f"new {rel} ({want} bytes)")
    for d in dirs + ["usr/lib", "usr/share"]:
        os.utime(os.path.join(root, d), (MTIME, MTIME))

    print(
        f"summary: {MODIFIED} of {total} files modified ({changed} bytes after the edits), "
        f"{NEW} new files ({NEW_BYTES} bytes): "
        f"{100.0 * (MODIFIED + NEW) / total:.2f}% of the files"
    )


if __name__ == "__main__":
    main()
