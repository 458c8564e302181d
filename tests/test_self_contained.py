"""A user's clone has nothing beside it: the repository must carry every file it reads.

The development checkout has a reference folder beside it that users never get; these
tests catch anything that reads it (once, four tests passed only because of it).
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_FOLDER = "sha" + "red"  # the folder beside the development checkout; spelled apart so this file does not match

# Tests that read reference data (state_dict table, targets.txt tables): run in the clone.
DATA_TESTS = [
    "tests/test_data_pipeline.py::test_real_track_counts_reuse_the_real_targets_table",
    "parity_tests/test_conversion.py::test_torch_ref_state_dict_equals_the_seed_layout",
    "parity_tests/test_conversion.py::test_finetuned_wrapper_keys",
]


def test_no_code_reads_the_development_folder_beside_the_checkout():
    """No path to the development folder, written whole or assembled from its parts."""
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.sh", "*.toml"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(rf"""\.\./{DEV_FOLDER}|["']{DEV_FOLDER}["']|{DEV_FOLDER}/reference""")
    readers = [p for p in tracked if pattern.search(open(os.path.join(ROOT, p)).read())]
    assert readers == []


def test_a_fresh_clone_passes_the_reference_data_tests(tmp_path):
    """`git clone` into an empty folder (nothing beside it), then pytest there."""
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout (an sdist or installed copy): nothing to clone")
    clone = tmp_path / "empty" / "jax-basenji"
    subprocess.run(["git", "clone", "--quiet", ROOT, str(clone)], check=True)
    assert not (clone.parent.parent / DEV_FOLDER).exists()
    env = {**os.environ, "PYTHONPATH": str(clone)}  # the clone's code, not the editable install
    probe = subprocess.run([sys.executable, "-c", "import jax_basenji; print(jax_basenji.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.startswith(str(clone))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DATA_TESTS],
                         cwd=clone, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
