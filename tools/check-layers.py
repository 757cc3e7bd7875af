#!/usr/bin/env python3
"""check-layers.py — refuses an include that runs up the layers (docs/architecture.md).

Run by every build (meson.build: the partyd binary depends on its stamp). For each C file of the layer folders it
checks that:
  - a quoted include names a header of the file's own folder or of a folder it may use (LAYERS below);
  - <h2o...> appears only in router/; <rocksdb/...> only in shard/store.c; the JS engine's headers (mozjs, jsapi.h)
    only in the JS runtime's folder (js/ or shard/js/, when it exists).
The per-library include folders already make such an include fail to compile; this says why, in words.

  check-layers.py --root SRC --stamp OUT   check, then touch OUT (exit 1 with the offending lines)
  check-layers.py --list DIR               print the C files under DIR (for meson's dependency list)
"""
import os
import re
import sys

# folder -> the folders whose headers it may include (its own always).
LAYERS = {
    'api': [],
    'proto': [],
    'config': ['proto', 'api'],
    'ipc': ['proto'],
    'js': ['api', 'proto'],
    'cluster': ['proto', 'config', 'ipc'],
    'shard': ['api', 'proto', 'config', 'ipc', 'js', 'cluster'],
    'router': ['api', 'proto', 'config', 'ipc', 'cluster'],
    'node': ['api', 'proto', 'config', 'ipc', 'js', 'cluster', 'router', 'shard'],
}
# system headers that belong to one place
SYSTEM = [
    (re.compile(r'^h2o[./]'), lambda f: f.startswith('router/'), 'h2o is the router\'s: include it only in router/'),
    (re.compile(r'^rocksdb/'), lambda f: f == 'shard/store.c', 'RocksDB is store.c\'s alone (shard/store.c)'),
    (re.compile(r'^(mozjs|jsapi\.h|js/)'), lambda f: f.startswith('js/') or f.startswith('shard/js/'),
     'the JS engine is the JS runtime\'s folder\'s alone (js/ or shard/js/)'),
]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def c_files(root, folder):
    out = []
    for d, _, names in os.walk(os.path.join(root, folder)):
        for n in sorted(names):
            if n.endswith(('.c', '.h', '.cpp')):
                out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def main(argv):
    if len(argv) == 3 and argv[1] == '--list':
        print('\n'.join(os.path.join(argv[2], f) for f in c_files(argv[2], '.')))
        return 0
    args = dict(zip(argv[1::2], argv[2::2]))
    root = args['--root']
    headers = {}  # header name -> folder
    files = []
    for folder in LAYERS:
        for f in c_files(root, folder):
            files.append((folder, f))
            if f.endswith('.h'):
                headers.setdefault(os.path.basename(f), folder)
    bad = []
    for folder, f in files:
        with open(os.path.join(root, f), encoding='utf-8') as fh:
            text = fh.read()
        for m in INCLUDE.finditer(text):
            kind, name = m.group(1), m.group(2)
            line = text.count('\n', 0, m.start()) + 1
            if kind == '<':
                for pattern, allowed, why in SYSTEM:
                    if pattern.search(name) and not allowed(f):
                        bad.append(f'{f}:{line}: #include <{name}>: {why}')
                continue
            owner = headers.get(os.path.basename(name))
            if owner is None or owner == folder:
                continue  # a generated or local file, or the folder's own
            if owner not in LAYERS[folder]:
                may = ', '.join(LAYERS[folder]) or 'none'
                bad.append(f'{f}:{line}: #include "{name}": a header of {owner}/, which {folder}/ may not use '
                           f'({folder}/ may include: {may}; docs/architecture.md)')
    if bad:
        sys.stderr.write('check-layers: an include runs against the layers:\n  ' + '\n  '.join(bad) + '\n')
        return 1
    with open(args['--stamp'], 'w') as fh:
        fh.write('ok\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
