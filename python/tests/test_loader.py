"""Unit tests of the SKILLS loader (run by `cargo test`, see
aigis-central/tests/python_units.rs, or: python3 -m unittest discover -s python/tests)."""

import logging
import os
import sys
import tempfile
import types
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import loader  # noqa: E402


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append((record.name, record.getMessage()))


class LoaderTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.handler = Records()
        self.root = types.ModuleType("aigis")
        self.core = loader.Core(self.root, lambda p: loader.plugin_logger(p, self.handler))

    def plugin(self, name, core, files=None):
        root = os.path.join(self.tmp.name, name)
        os.makedirs(os.path.join(root, "AIGIS"))
        with open(os.path.join(root, "AIGIS", "AIGIS.core"), "w") as f:
            f.write(core)
        for rel, text in (files or {}).items():
            with open(os.path.join(root, rel), "w") as f:
                f.write(text)
        return root, os.path.join(root, "AIGIS", "AIGIS.core")

    def load(self, name, core, files=None):
        return self.core.load(name, *self.plugin(name, core, files))

    def test_shared_namespace_constants_and_logger_injection(self):
        self.load("p1", "import p1_impl as a\nSKILLS = ['a.x', 'a.K']\n",
                  {"p1_impl.py": "K = 7\ndef x(n, logger):\n    logger.info('x %s', n)\n    return n + 1\n"})
        names = self.load("p2", "import p2_impl as a\nSKILLS = ['a.y', 'a.kw']\n",
                          {"p2_impl.py": "def y(s):\n    return s * 2\ndef kw(**k):\n    return sorted(k)\n"})
        self.assertEqual(names, ["a.y", "a.kw"])
        self.assertEqual(self.root.a.x(1), 2)
        self.assertEqual(self.root.a.K, 7)
        self.assertEqual(self.root.a.y("ab"), "abab")
        self.assertEqual(self.root.a.kw(z=1), ["logger", "z"])
        self.assertEqual(self.handler.records, [("aigis.plugin.p1", "x 1")])
        self.assertEqual(self.root.a.x.__name__, "x")
        own = logging.getLogger("mine")
        own.addHandler(self.handler)
        own.propagate = False
        own.setLevel(logging.DEBUG)
        self.root.a.x(5, logger=own)
        self.assertEqual(self.handler.records[-1], ("mine", "x 5"))

    def test_a_name_taken_by_an_earlier_plugin_fails_the_later_one_whole(self):
        self.load("first", "import f_impl as a\nSKILLS = ['a.x']\n", {"f_impl.py": "def x():\n    return 1\n"})
        with self.assertRaises(loader.SkillError) as e:
            self.load("second", "import s_impl as a\nSKILLS = ['a.z', 'a.x']\n",
                      {"s_impl.py": "def x():\n    return 2\ndef z():\n    return 3\n"})
        self.assertIn("already exposed by `first`", str(e.exception))
        self.assertFalse(hasattr(self.root.a, "z"), "a failing plugin exposed part of its skills")
        self.assertEqual(self.root.a.x(), 1)
        with self.assertRaises(loader.SkillError):
            self.load("third", "import t_impl as a\nSKILLS = ['a.x.deeper']\n",
                      {"t_impl.py": "class x:\n    deeper = 1\n"})

    def test_bad_plugins_are_reported_with_what_is_wrong(self):
        cases = [
            ("SKILLS = 'a.x'\n", "must be a list"),
            ("X = 1\n", "defines no SKILLS"),
            ("SKILLS = ['a..x']\n", "is not a dotted name"),
            ("SKILLS = ['nothing.here']\n", "has no attribute 'nothing'"),
            ("def broken(:\n", "SyntaxError"),
            ("import no_such_module_anywhere\nSKILLS = []\n", "ModuleNotFoundError"),
            ("raise RuntimeError('boom at import')\n", "boom at import"),
        ]
        for i, (core, needle) in enumerate(cases):
            with self.assertRaises(loader.SkillError, msg=core) as e:
                self.load("bad%d" % i, core)
            self.assertIn(needle, str(e.exception))
            self.assertIn("bad%d" % i, str(e.exception))

    def test_cleanup_unload_and_reload(self):
        root, core_file = self.plugin("r", "import r_impl as r\nSKILLS = ['r.v']\n"
                                      "def cleanup():\n    raise ValueError('cleanup broke')\n",
                                      {"r_impl.py": "def v():\n    return 1\n"})
        self.core.load("r", root, core_file)
        self.assertEqual(self.root.r.v(), 1)
        with open(os.path.join(root, "r_impl.py"), "w") as f:
            f.write("def v():\n    return 2\n")
        # No help from the test: unloading forgets the plugin's own modules.
        self.core.reload("r")
        self.assertEqual(self.root.r.v(), 2)
        self.assertTrue(any("cleanup() failed" in m for _, m in self.handler.records))
        self.core.unload("r")
        self.assertFalse(hasattr(self.root, "r"), "an emptied namespace was left behind")
        self.assertEqual(self.core.plugins(), [])

    def test_resolve_names_exposed_skills_by_the_reach_rule(self):
        """A skill is found by its name alone, unless a part of it starts
        with `_` (the reach rule refuses those paths, exposed or not); a
        skill unloaded is gone from the proxy's reach too."""
        self.load("s", "import reach_impl as s\nSKILLS = ['s.f', 's._g']\n",
                  {"reach_impl.py": "def f():\n    return 1\ndef _g():\n    return 2\n"})
        self.assertEqual(self.core.resolve("s.f")(), 1)
        with self.assertRaises(AttributeError):
            self.core.resolve("s._g")
        with self.assertRaises(AttributeError):
            self.core.resolve(["s.f"])
        self.core.unload("s")
        with self.assertRaises(AttributeError):
            self.core.resolve("s.f")

    def test_entrypoint_is_appended_and_never_shadows_what_is_installed(self):
        root, core_file = self.plugin("shadow", "import json\nSKILLS = ['json.JSONDecoder']\n",
                                      {"json.py": "JSONDecoder = 'shadowed'\n"})
        self.core.load("shadow", root, core_file)
        self.assertEqual(sys.path[-1], root)
        import json
        self.assertIs(self.root.json.JSONDecoder, json.JSONDecoder)
        self.core.unload("shadow")
        self.assertIn("json", sys.modules, "the standard json is not the plugin's to forget")


if __name__ == "__main__":
    unittest.main()
