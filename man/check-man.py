#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks the man pages against the tools and against the project's other
homes of the same facts, so that they cannot drift apart (man/meson.build
runs each check as a test):

  lint PAGE...                      mandoc -T lint and man --warnings are silent
  options PAGE PROGRAM [COMMAND...] every option of PROGRAM --help (and of
                                    PROGRAM COMMAND --help) is in the page's
                                    OPTIONS, every option the page lists is
                                    accepted, every command is documented
  config PAGE EXAMPLE_CONF CONFIGURATION_MD SYSCONFDIR
                                    the same keys, in the same groups, with
                                    the same defaults as data/wave-bridge.conf
                                    and docs/configuration.md
  config-daemon PAGE WAVE_BRIDGED   the daemon starts with every key of the
                                    page set to its documented default and
                                    calls none of them unknown
  dbus PAGE XML                     every method, signal and property of the
                                    introspection XML with its signature, and
                                    every error it names
  protocol PAGE PROTOCOL_MD         every request type and error code of
                                    docs/protocol.md
"""
import configparser
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

failures = []


def fail(message):
    failures.append(message)
    print('FAIL: ' + message, file=sys.stderr)


def ok(message):
    """Says what a check compared, once it found nothing wrong."""
    if not failures:
        print('ok ' + message)


def need(tool, package):
    path = shutil.which(tool)
    if path is None:
        sys.exit(f'{tool} is missing: install {package} (scripts/install-deps does)')
    return path


def render(page):
    """The page as plain text, as wide as its longest line needs."""
    need('mandoc', 'mandoc')
    out = subprocess.run(['mandoc', '-T', 'ascii', '-O', 'width=200', page],
                         check=True, capture_output=True, text=True).stdout
    return re.sub(r'.\x08', '', out)


def sections(text):
    """Top-level sections of rendered text: {'OPTIONS': '...', ...}; every
    line that starts in the first column is a heading (or the header and
    footer lines, which become sections nobody asks for)."""
    result = {}
    name = None
    for line in text.splitlines():
        if line.strip() and not line[0].isspace():
            name = line.strip()
            result[name] = ''
        elif name is not None:
            result[name] += line + '\n'
    return result


def tags(section_text):
    """The tags of .TP items: lines indented exactly as deep as the first."""
    lines = [l for l in section_text.splitlines() if l.strip()]
    if not lines:
        return []
    indent = min(len(l) - len(l.lstrip()) for l in lines)
    return [l.strip() for l in lines if len(l) - len(l.lstrip()) == indent]


OPTION = re.compile(r'(?<![\w-])(--?[a-zA-Z][a-zA-Z0-9-]*)')


def check_lint(pages):
    need('mandoc', 'mandoc')
    need('man', 'man-db')
    for page in pages:
        name = os.path.basename(page)
        lint = subprocess.run(['mandoc', '-T', 'lint', '-W', 'warning', page],
                              capture_output=True, text=True)
        if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
            fail(f'{name}: mandoc -T lint:\n{lint.stdout}{lint.stderr}')
        env = dict(os.environ, LC_ALL='C.UTF-8', MANWIDTH='80', MAN_KEEP_FORMATTING='')
        groff = subprocess.run(['man', '--warnings', '-E', 'UTF-8', '-l', page],
                               capture_output=True, text=True, env=env)
        if groff.returncode != 0 or groff.stderr.strip():
            fail(f'{name}: man --warnings:\n{groff.stderr}')
        elif len(groff.stdout.splitlines()) < 20:
            fail(f'{name}: renders to almost nothing')
        else:
            ok(f'{name}: mandoc -T lint and man --warnings are clean')


def help_text(program, args):
    result = subprocess.run([program] + args + ['--help'], capture_output=True, text=True,
                            env=dict(os.environ, LC_ALL='C.UTF-8'))
    if result.returncode != 0:
        fail(f'{" ".join([os.path.basename(program)] + args)} --help exited {result.returncode}')
    return result.stdout


def check_options(page, program, commands):
    name = os.path.basename(page)
    text = sections(render(page))
    documented = text.get('OPTIONS', '')
    if not documented:
        fail(f'{name}: no OPTIONS section')
    helps = {'': help_text(program, [])}
    for command in commands:
        helps[command] = help_text(program, [command])
    accepted = set()
    for command, out in helps.items():
        for option in OPTION.findall(out):
            accepted.add(option)
            if not re.search(r'(?<![\w-])' + re.escape(option) + r'(?![\w-])', documented):
                fail(f'{name}: {option} (from {os.path.basename(program)} {command} --help) '
                     'is not in OPTIONS')
    listed = {o for tag in tags(documented) for o in OPTION.findall(tag)}
    for option in sorted(listed - accepted):
        fail(f'{name}: OPTIONS lists {option}, which no --help mentions')
    if commands:
        main = helps['']
        block = main.split('Commands:', 1)[1].split('\n\n', 1)[0] if 'Commands:' in main else ''
        listed_commands = {l.split()[0] for l in block.splitlines() if l.strip()}
        if set(commands) != listed_commands:
            fail(f'{name}: the commands given {sorted(commands)} are not those of --help '
                 f'{sorted(listed_commands)}')
        documented_commands = {t.split()[0] for t in tags(text.get('COMMANDS', ''))}
        for command in sorted(listed_commands - documented_commands):
            fail(f'{name}: command {command} is not in COMMANDS')
    ok(f'{name}: {len(accepted)} options of {os.path.basename(program)} checked '
          f'({len(listed)} listed in OPTIONS)')


def example_config(path, sysconfdir):
    """{(group, key): default} from the commented '#Key=value' lines."""
    keys = {}
    group = None
    for line in open(path, encoding='utf-8'):
        line = line.strip()
        m = re.match(r'^\[(\w+)\]$', line)
        if m:
            group = m.group(1)
            continue
        m = re.match(r'^#([A-Z]\w*)=(.*)$', line)
        if m:
            keys[(group, m.group(1))] = m.group(2).strip().replace('/etc/', sysconfdir + '/')
    return keys


def markdown_config(path):
    """{(group, key)} from the ini block under '## Keys' in docs/configuration.md."""
    text = open(path, encoding='utf-8').read()
    block = text.split('## Keys', 1)[1].split('```ini', 1)[1].split('```', 1)[0]
    parser = configparser.ConfigParser(inline_comment_prefixes=('#',), interpolation=None)
    parser.optionxform = str
    parser.read_string(block)
    return {(g, k) for g in parser.sections() for k in parser[g]}


def page_config(page):
    """{(group, key): 'Default: ...' text or None} from wave-bridge.conf(5)."""
    in_page = {}
    for title, body in sections(render(page)).items():
        m = re.match(r'^\[(\w+)\] SECTION$', title)
        if not m:
            continue
        key = None
        for line in body.splitlines():
            t = re.match(r'^ {7}([A-Z]\w*)=(\S+)$', line)
            if t:
                key = (m.group(1), t.group(1))
                in_page[key] = None
                continue
            d = re.match(r'^\s+Default: (.*)$', line)
            if d and key is not None and in_page[key] is None:
                in_page[key] = d.group(1).strip()
    return in_page


def check_config(page, example, markdown, sysconfdir):
    name = os.path.basename(page)
    in_page = page_config(page)
    keys = example_config(example, sysconfdir)
    if len(keys) < 10:
        fail(f'{example}: found only {len(keys)} keys; is the format still "#Key=default"?')
    for group, key in sorted(set(keys) - set(in_page)):
        fail(f'{name}: [{group}] {key}= of the example configuration is missing')
    for group, key in sorted(set(in_page) - set(keys)):
        fail(f'{name}: [{group}] {key}= is not in the example configuration')
    for k in sorted(set(keys) & set(in_page)):
        default, documented = keys[k], in_page[k]
        if documented is None:
            fail(f'{name}: [{k[0]}] {k[1]}= has no "Default:" line')
        elif default == '':
            if not documented.startswith('empty'):
                fail(f'{name}: [{k[0]}] {k[1]}= default is empty, the page says {documented!r}')
        elif documented.split()[0] != default:
            fail(f'{name}: [{k[0]}] {k[1]}= default is {default!r}, the page says {documented!r}')
    md_keys = markdown_config(markdown)
    for group, key in sorted(md_keys ^ set(in_page)):
        fail(f'{name}: [{group}] {key}= is in only one of the page and {os.path.basename(markdown)}')
    ok(f'{name}: {len(in_page)} keys with their defaults agree with '
          f'{os.path.basename(example)} ({len(keys)}) and {os.path.basename(markdown)} '
          f'({len(md_keys)})')


def check_config_daemon(page, daemon):
    """The daemon itself accepts every key of the page with its documented
    default, and warns about none of them (it warns about keys outside its
    own table, as the probe group at the end shows)."""
    import signal
    import tempfile
    import time
    name = os.path.basename(page)
    in_page = page_config(page)
    if len(in_page) < 10:
        fail(f'{name}: found only {len(in_page)} keys')
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        for group in dict.fromkeys(g for g, _ in in_page):
            lines.append(f'[{group}]')
            for (g, key), default in in_page.items():
                if g == group:
                    value = '' if default is None or default.startswith('empty') else default.split()[0]
                    lines.append(f'{key}={value}')
        lines += ['[NoSuchGroup]', 'NoSuchKey=1']
        conf = os.path.join(tmp, 'wave-bridge.conf')
        with open(conf, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        env = dict(os.environ, HOME=tmp, XDG_CONFIG_HOME=tmp, XDG_RUNTIME_DIR=tmp,
                   WAVE_API_KEY='man_page_check', G_MESSAGES_DEBUG='')
        for var in ('NOTIFY_SOCKET', 'LISTEN_FDS', 'LISTEN_PID', 'CREDENTIALS_DIRECTORY'):
            env.pop(var, None)
        log = open(os.path.join(tmp, 'stderr'), 'w+')
        proc = subprocess.Popen([daemon, '--config=' + conf, '--bus=none',
                                 '--socket=' + os.path.join(tmp, 'wave.sock')],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            log.seek(0)
            if ' ready: ' in log.read():
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=20)
        log.seek(0)
        output = log.read()
    unknown = re.findall(r'unknown key \[(\w+)\] (\w+)', output)
    if ('NoSuchGroup', 'NoSuchKey') not in unknown:
        fail(f'{name}: the daemon did not warn about the probe key [NoSuchGroup] NoSuchKey, '
             f'so this check proves nothing:\n{output}')
    for group, key in unknown:
        if group != 'NoSuchGroup':
            fail(f'{name}: the daemon does not know [{group}] {key}=')
    if ' ready: ' not in output or status != 0:
        fail(f'{name}: the daemon refused the documented defaults (exit status {status}):\n'
             f'{output}')
    ok(f'{name}: {os.path.basename(daemon)} accepts all {len(in_page)} keys with their '
       'documented defaults and knows each of them')


def flat(text):
    return re.sub(r'\s+', ' ', text)


def check_dbus(page, xml):
    name = os.path.basename(page)
    rendered = render(page)
    text = sections(rendered)
    root = ET.parse(xml).getroot()
    count = 0
    for interface in root.findall('interface'):
        iname = interface.get('name')
        m = re.search(r'interface ' + re.escape(iname) + r' \{(.*?)\n\s*\};', rendered, re.S)
        if m is None:
            fail(f'{name}: no "interface {iname} {{ ... }};" block')
            continue
        block = flat(m.group(1))
        for method in interface.findall('method'):
            args = ', '.join(f'{a.get("direction", "in")} {a.get("type")} {a.get("name")}'
                             for a in method.findall('arg'))
            want = f'{method.get("name")}({args});'
            count += 1
            if want not in block:
                fail(f'{name}: {iname}: method {want} is not in the interface block')
            elif not re.search(r'^ {7}' + method.get('name') + r'\(\)', rendered, re.M):
                fail(f'{name}: {iname}: method {method.get("name")}() is not described')
        for signal in interface.findall('signal'):
            args = ', '.join(f'{a.get("type")} {a.get("name")}' for a in signal.findall('arg'))
            want = f'{signal.get("name")}({args});'
            count += 1
            if want not in block:
                fail(f'{name}: {iname}: signal {want} is not in the interface block')
        for prop in interface.findall('property'):
            want = f'readonly {prop.get("type")} {prop.get("name")} ='
            count += 1
            if prop.get('access') != 'read':
                fail(f'{name}: {iname}.{prop.get("name")} is not read-only: update the page')
            if want not in block:
                fail(f'{name}: {iname}: property "{want}" is not in the interface block')
            if not re.search(r'(?<![\w.])' + prop.get('name') + r'(?![\w])',
                             block.replace(want, '') + flat(rendered.replace(m.group(1), ''))):
                fail(f'{name}: {iname}: property {prop.get("name")} is not described')
        for member in interface:
            if member.tag in ('method', 'signal', 'property'):
                continue
            fail(f'{name}: {iname}: unexpected <{member.tag}> in the XML')
        names = {e.get('name') for e in interface if e.tag in ('method', 'signal', 'property')}
        # Member names are capitalized; a( in a type signature is not one.
        listed = set(re.findall(r'(?<![\w.])([A-Z]\w*)\(', block)) - {'EmitsChangedSignal'}
        listed |= set(re.findall(r'readonly \w+ (\w+) =', block))
        for member in sorted(listed - names):
            fail(f'{name}: {iname}: the page lists {member}, which the XML does not have')
    errors = set(re.findall(r'inc\.wave\.Bridge1\.Error\.\w+', open(xml).read()))
    documented = set(re.findall(r'inc\.wave\.Bridge1\.Error\.\w+', text.get('ERRORS', '')))
    for error in sorted(errors - documented):
        fail(f'{name}: error {error} is not in ERRORS')
    for error in sorted(documented - errors):
        fail(f'{name}: ERRORS lists {error}, which the XML does not name')
    if len(errors) < 5 or count < 20:
        fail(f'{name}: found only {count} members and {len(errors)} errors in {xml}')
    ok(f'{name}: {count} members and {len(errors)} errors agree with '
          f'{os.path.basename(xml)}')


def check_protocol(page, markdown):
    name = os.path.basename(page)
    text = sections(render(page))
    md = open(markdown, encoding='utf-8').read()
    codes_md = md.split('## Error codes', 1)[1].split('\n## ', 1)[0]
    codes = set(re.findall(r'^\| `(\w+)` \|', codes_md, re.M))
    # A short tag shares its line with the start of the text.
    documented = {t.split()[0] for t in tags(text.get('ERROR CODES', ''))}
    for code in sorted(codes - documented):
        fail(f'{name}: error code {code} is not in ERROR CODES')
    for code in sorted(documented - codes):
        fail(f'{name}: ERROR CODES lists {code}, which {os.path.basename(markdown)} does not')
    requests_md = md.split('## Requests', 1)[1].split('\n## ', 1)[0]
    requests = set(re.findall(r'^\| `([\w.]+)` \|', requests_md, re.M))
    listed = set(re.findall(r'\{"type":"([\w.]+)"', text.get('REQUESTS', '')))
    for request in sorted(requests ^ listed):
        fail(f'{name}: request {request} is in only one of REQUESTS and '
             f'{os.path.basename(markdown)}')
    if len(codes) < 5 or len(requests) < 5:
        fail(f'{name}: found only {len(codes)} codes and {len(requests)} requests in {markdown}')
    ok(f'{name}: {len(codes)} error codes and {len(requests)} requests agree with '
          f'{os.path.basename(markdown)}')


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    what, args = argv[1], argv[2:]
    if what == 'lint':
        check_lint(args)
    elif what == 'options':
        check_options(args[0], args[1], args[2:])
    elif what == 'config':
        check_config(*args)
    elif what == 'config-daemon':
        check_config_daemon(*args)
    elif what == 'dbus':
        check_dbus(*args)
    elif what == 'protocol':
        check_protocol(*args)
    else:
        sys.exit(f'unknown check {what}')
    if failures:
        sys.exit(f'{len(failures)} problem(s)')


if __name__ == '__main__':
    main(sys.argv)
