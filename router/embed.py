#!/usr/bin/env python3
"""Writes a C file holding a file's bytes: embed.py INPUT OUTPUT NAME -> const char NAME[]; const size_t NAME_len."""
import sys

src, dst, name = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, 'rb').read()
with open(dst, 'w') as out:
    out.write('/* generated from %s by embed.py: do not edit */\n#include <stddef.h>\n' % src.split('/')[-1])
    out.write('const char %s[] = {\n' % name)
    for i in range(0, len(data), 16):
        out.write('    ' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    out.write('    0x00};\nconst size_t %s_len = %d;\n' % (name, len(data)))
