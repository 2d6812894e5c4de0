#!/usr/bin/env python3
"""The README's examples, taken from the README itself so that it cannot drift.

  readme.py block README SECTION LANG [N]
      print the Nth (default 1st) code block of language LANG ('' for none)
      under the heading SECTION
  readme.py tour README SQL OUT
      the SQL tour: the sql blocks of TOUR_SECTIONS must be SQL's text after
      its MARKER line, and the output the README shows under a statement
      (the comment lines right after the line that ends it) must be what
      OUT, pg_regress's expected output of SQL, holds for that statement
  readme.py tour-write README SQL
      rewrite SQL after its MARKER line with the tour's sql blocks (then run
      the test and copy its results/readme.out to OUT)
  readme.py console README SECTION
      run the console blocks under SECTION in one bash, in the current
      directory and environment: each '$ ' line is a command, the lines up
      to the next one its output (stdout and stderr), which must match

Outputs are compared line by line, trailing blanks aside; the only value
masked is the milliseconds of 'retry after N ms', which depend on the clock
(the README says so).  Prints what differs and exits 1 on a mismatch.
"""
import difflib
import re
import subprocess
import sys
import tempfile

TOUR_SECTIONS = ('A five-minute tour', 'Throttling triggers, dry runs, statistics')
MARKER = '-- ---- the README from here on ----'


def section(readme, title):
    """The lines under the heading TITLE, up to the next heading of its level or above."""
    lines = open(readme).read().split('\n')
    out, level, fence = None, 0, False
    for line in lines:
        if line.startswith('```'):
            fence = not fence
        m = None if fence else re.match(r'(#+) (.*)', line)
        if m and out is not None and len(m.group(1)) <= level:
            break
        if out is not None:
            out.append(line)
        elif m and m.group(2).strip() == title:
            out, level = [], len(m.group(1))
    if out is None:
        sys.exit('README: no section "%s"' % title)
    return out


def blocks(lines, lang):
    """The code blocks of language LANG in LINES, each a list of lines."""
    found, inside, keep = [], False, False
    for line in lines:
        if line.startswith('```'):
            if inside and keep:
                found.append(cur)
            inside, keep, cur = not inside, line[3:].strip() == lang, []
        elif inside:
            cur.append(line)
    return found


def mask(line):
    return re.sub(r'retry after \d+ ms', 'retry after N ms', line.rstrip())


def cells(line):
    """A psql row as its cells, so that alignment does not matter."""
    return [c.strip() for c in line.split('|')] if '|' in line else [line.strip()]


def differ(what, want, got):
    print('%s:\n  README shows:\n%s\n  it prints:\n%s' % (
        what, '\n'.join('    ' + l for l in want) or '    (nothing)',
        '\n'.join('    ' + l for l in got) or '    (nothing)'))


def ends_statement(line):
    code = re.sub(r"'[^']*'", "''", line)
    code = code.split('--', 1)[0].rstrip()
    return code.endswith(';')


def tour_sql(readme, sql_path):
    """The tour's lines in the README, and SQL_PATH's lines."""
    text = []
    for title in TOUR_SECTIONS:
        for b in blocks(section(readme, title), 'sql'):
            text.append('\n'.join(b))
    sql = open(sql_path).read().rstrip('\n').split('\n')
    if MARKER not in sql:
        sys.exit('%s: no line "%s"' % (sql_path, MARKER))
    return '\n\n'.join(text).split('\n'), sql


def tour_write(readme, sql_path):
    readme_sql, sql = tour_sql(readme, sql_path)
    with open(sql_path, 'w') as f:
        f.write('\n'.join(sql[:sql.index(MARKER) + 1] + readme_sql) + '\n')
    return 0


def tour(readme, sql_path, out_path):
    readme_sql, sql = tour_sql(readme, sql_path)
    body = sql[sql.index(MARKER) + 1:]
    bad = 0
    if body != readme_sql:
        print('%s differs from the README\'s SQL (%s); run test/tools/readme.py'
              ' tour-write README.md %s:' % (sql_path, ', '.join(TOUR_SECTIONS), sql_path))
        sys.stdout.writelines(l + '\n' for l in difflib.unified_diff(
            body, readme_sql, sql_path, 'README.md', lineterm=''))
        return 1

    # pg_regress echoes every input line: what lies between the echo of one
    # line and the echo of the next non-empty one is the first one's output.
    out = open(out_path).read().split('\n')
    printed, pos, prev = {}, 0, None
    for i, line in enumerate(sql):
        if not line.strip():
            continue
        try:
            j = out.index(line, pos)
        except ValueError:
            sys.exit('%s: line %d of %s is not echoed there' % (out_path, i + 1, sql_path))
        if prev is not None:
            printed[prev] = out[pos:j]
        prev, pos = i, j + 1
    printed[prev] = out[pos:]

    base = sql.index(MARKER) + 1
    i = 0
    while i < len(readme_sql):
        end, line = i, readme_sql[i]
        i += 1
        shown = []
        while ends_statement(line) and i < len(readme_sql) and readme_sql[i].startswith('--'):
            shown.append(readme_sql[i][2:])
            i += 1
        if not shown:
            continue
        got = [l for l in printed[base + end]
               if l.strip() and not re.fullmatch(r'-+(\+-+)*', l)
               and not re.fullmatch(r'\(\d+ rows?\)', l)]
        want = [cells(mask(l)) for l in shown]
        have = [cells(mask(l)) for l in got]
        if want != have and want != have[1:]:
            bad += 1
            differ('README, the statement ending "%s"' % line.strip(), [l.strip() for l in shown], got)
    return 1 if bad else 0


def console(readme, title):
    steps = []
    for b in blocks(section(readme, title), 'console'):
        for line in b:
            if line.startswith('$ '):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
            else:
                sys.exit('README, %s: output before any command' % title)
    script = 'exec 2>&1\n' + ''.join(
        'echo "@@readme-step %d"\n%s\n' % (n, cmd) for n, (cmd, _) in enumerate(steps))
    with tempfile.NamedTemporaryFile('w', suffix='.sh') as f:
        f.write(script)
        f.flush()
        res = subprocess.run(['bash', f.name], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, text=True)
    got, cur = {}, None
    for line in res.stdout.split('\n'):
        m = re.fullmatch(r'@@readme-step (\d+)', line)
        if m:
            cur = int(m.group(1))
            got[cur] = []
        elif cur is not None:
            got[cur].append(line)
    bad = 0
    for n, (cmd, want) in enumerate(steps):
        have = [mask(l) for l in got.get(n, [])]
        while have and not have[-1]:
            have.pop()
        if [mask(l) for l in want] != have:
            bad += 1
            differ('README, %s: $ %s' % (title, cmd), want, got.get(n, []))
    print('%s: %d commands, %d outputs differ' % (title, len(steps), bad))
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 5 and argv[1] == 'block':
        found = blocks(section(argv[2], argv[3]), argv[4])
        n = int(argv[5]) if len(argv) > 5 else 1
        if len(found) < n:
            sys.exit('README, %s: no %s block number %d' % (argv[3], argv[4] or 'plain', n))
        print('\n'.join(found[n - 1]))
        return 0
    if len(argv) == 5 and argv[1] == 'tour':
        return tour(argv[2], argv[3], argv[4])
    if len(argv) == 4 and argv[1] == 'tour-write':
        return tour_write(argv[2], argv[3])
    if len(argv) == 4 and argv[1] == 'console':
        return console(argv[2], argv[3])
    sys.exit(__doc__)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
