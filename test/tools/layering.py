#!/usr/bin/env python3
"""Check that the extension's modules read bottom-up.

The Makefile lists OBJS bottom-up.  A module is a .c file with the .h of the
same name; a file may include (directly or through other headers) only the
headers of modules listed before it, plus headers that belong to no module
(compat.h, bucket.h, the core's pyrate_core.h).  Prints each violation and
exits 1 when there is one.
"""
import os
import re
import sys

top = sys.argv[1] if len(sys.argv) > 1 else '.'
src = os.path.join(top, 'src')
make = open(os.path.join(top, 'Makefile')).read()
m = re.search(r'^OBJS = \\\n((?:\t.*\\\n)*\t.*\n)', make, re.M)
order = []
for tok in m.group(1).split():
    tok = tok.strip('\\')
    if tok.startswith('src/') and tok.endswith('.o') and '/core/' not in tok:
        order.append(os.path.basename(tok)[:-2])
rank = {mod: i for i, mod in enumerate(order)}

def includes(path):
    try:
        text = open(path).read()
    except OSError:
        return []
    return re.findall(r'^#include "([^"]+)"', text, re.M)

def closure(path, seen):
    for h in includes(path):
        if h in seen:
            continue
        seen.add(h)
        closure(os.path.join(src, h), seen)
    return seen

bad = 0
for mod in order:
    for f in (mod + '.c', mod + '.h'):
        path = os.path.join(src, f)
        if not os.path.exists(path):
            continue
        for h in sorted(closure(path, set())):
            owner = h[:-2]
            if owner == mod or owner not in rank:
                continue
            if rank[owner] > rank[mod]:
                print(f'{f} uses {h}, which belongs to {owner}.c, listed after it')
                bad += 1
missing = [f[:-2] for f in os.listdir(src) if f.endswith('.c') and f[:-2] not in rank]
for f in missing:
    print(f'src/{f}.c is not in the Makefile\'s OBJS')
    bad += 1
print(f'{len(order)} modules checked, {bad} out of order')
sys.exit(1 if bad else 0)
