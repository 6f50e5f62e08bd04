# SPDX-License-Identifier: MIT
"""`meson install` installs the systemd units, bus files, sysusers/tmpfiles
and default config; the units pass `systemd-analyze verify`, and the system
service's hardening scores at most 1.5 ("OK") in `systemd-analyze security`."""

import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from wbtest import BUILD_DIR

# DESIGN.md: exposure <= 1.5; systemd-analyze takes the threshold in tenths.
SECURITY_THRESHOLD = 15


class InstalledUnits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.destdir = tempfile.mkdtemp(prefix='wb-install-')
        out = subprocess.run(['meson', 'install', '-C', BUILD_DIR, '--no-rebuild', '--quiet',
                              '--destdir', cls.destdir], capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError(f'meson install failed: {out.stdout}{out.stderr}')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.destdir, ignore_errors=True)

    def find(self, pattern):
        matches = glob.glob(os.path.join(self.destdir, '**', pattern), recursive=True)
        self.assertTrue(matches, f'{pattern} not installed under {self.destdir}')
        return matches[0]

    def rooted_copy(self, unit_path, directory):
        """The unit with its ExecStart pointing into DESTDIR, so verify can
        check that the binary exists and is executable."""
        with open(unit_path) as f:
            text = f.read()
        text = re.sub(r'^(Exec\w+=)(/\S*wave-bridged)', lambda m: m.group(1) + self.destdir + m.group(2),
                      text, flags=re.M)
        target = os.path.join(directory, os.path.basename(unit_path))
        with open(target, 'w') as f:
            f.write(text)
        return target

    def test_everything_is_installed(self):
        for pattern in ['wave-bridged', 'wave-sim', 'wavectl', 'system/wave-bridge.service',
                        'system/wave-bridge.socket', 'user/wave-bridge.service',
                        'sysusers.d/wave-bridge.conf', 'tmpfiles.d/wave-bridge.conf',
                        'wave-bridge/wave-bridge.conf', 'inc.wave.Bridge1.xml',
                        'system.d/inc.wave.Bridge1.conf', 'system-services/inc.wave.Bridge1.service']:
            self.find(pattern)

    def test_units_verify(self):
        with tempfile.TemporaryDirectory() as tmp:
            units = [self.rooted_copy(self.find('system/wave-bridge.service'), tmp),
                     self.rooted_copy(self.find('system/wave-bridge.socket'), tmp)]
            # Documentation=man:... must resolve to the pages installed with the units.
            manpath = os.path.dirname(os.path.dirname(self.find('man8/wave-bridged.8')))
            out = subprocess.run(['systemd-analyze', 'verify'] + units, capture_output=True, text=True,
                                 env=dict(os.environ, MANPATH=manpath))
            problems = [line for line in (out.stdout + out.stderr).splitlines()
                        if 'wave-bridge' in line]
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertEqual(problems, [])

    def test_user_unit_verifies(self):
        with tempfile.TemporaryDirectory() as tmp:
            unit = self.rooted_copy(self.find('user/wave-bridge.service'), tmp)
            out = subprocess.run(['systemd-analyze', '--user', 'verify', unit],
                                 capture_output=True, text=True)
            problems = [line for line in (out.stdout + out.stderr).splitlines()
                        if 'wave-bridge.service' in line]
            self.assertEqual(problems, [])

    def test_service_hardening_scores_ok(self):
        unit = self.find('system/wave-bridge.service')
        out = subprocess.run(['systemd-analyze', '--offline=yes', f'--threshold={SECURITY_THRESHOLD}',
                              'security', unit], capture_output=True, text=True)
        last = (out.stdout.strip().splitlines() or [''])[-1]
        self.assertEqual(out.returncode, 0, f'exposure above 1.5: {last}')
        level = float(re.search(r'exposure level for \S+: ([0-9.]+)', last).group(1))
        self.assertLessEqual(level, 1.5)

    def test_sysusers_creates_the_groups(self):
        conf = self.find('sysusers.d/wave-bridge.conf')
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, 'etc'))
            out = subprocess.run(['systemd-sysusers', f'--root={root}', conf],
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            with open(os.path.join(root, 'etc', 'group')) as f:
                groups = {line.split(':')[0] for line in f}
            with open(os.path.join(root, 'etc', 'passwd')) as f:
                users = {line.split(':')[0] for line in f}
            self.assertLessEqual({'wave', 'wave-chat'}, groups)
            self.assertIn('wave-bridge', users)


if __name__ == '__main__':
    unittest.main()
