#!/usr/bin/env python3
"""Rewrites a CUDA source for the CPU emulator: every kernel launch
`name<<<grid, block, shmem, stream>>>(args)` becomes
`::vae_emu::launcher(name, "name", grid, block, shmem, stream)(args)`; the rest is kept
as is (the prelude, force-included, maps the CUDA keywords). A #line directive keeps
compiler messages pointing at the original file.

usage: translate.py IN.cu OUT.cpp"""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;(){}]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)


def rewrite(text: str) -> tuple[str, int]:
    count = 0

    def repl(m: re.Match) -> str:
        nonlocal count
        count += 1
        name, cfg = m.group(1), m.group(2)
        return f'::vae_emu::launcher({name}, "{name}", {cfg})('

    return LAUNCH.sub(repl, text), count


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    out, n = rewrite(text)
    if "<<<" in out:
        print(f"translate.py: {src}: a launch it could not rewrite is left", file=sys.stderr)
        return 1
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{src}"\n' + out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
